"""Chat Completions through the official Python SDK against rill's mock
model: a stream with reasoning and a tool call (raw and through the strict
stream helper), the tool round trip, a plain completion, the generation
behind it, and errors raised as the SDK's own exception classes."""

import json
import unittest
import urllib.request

import openai
from openai import OpenAI

from support import CHAT_TOOLS, Rill

rill = None
shared = None


def setUpModule():
    global rill, shared
    rill = Rill("--mock-delay-ms", "2", "--allowed-model", "llama3.1,tiny")
    shared = OpenAI(base_url=rill.base_url, api_key="sk-local", max_retries=0)


def tearDownModule():
    shared.close()
    rill.stop()


def client():
    return shared


ASK = [{"role": "user", "content": "Think first: what is the weather in Paris?"}]


class ChatStream(unittest.TestCase):
    def test_raw_stream_has_reasoning_then_one_whole_tool_call_and_usage(self):
        stream = client().chat.completions.create(
            model="llama3.1", messages=ASK, tools=CHAT_TOOLS, stream=True,
            stream_options={"include_usage": True},
        )
        reasoning, calls, finish, usage, roles = "", [], None, None, []
        for chunk in stream:
            self.assertEqual(chunk.object, "chat.completion.chunk")
            if not chunk.choices:
                usage = chunk.usage
                continue
            delta = chunk.choices[0].delta
            roles.append(delta.role)
            reasoning += getattr(delta, "reasoning_content", None) or ""
            self.assertFalse(delta.content, "reasoning never arrives as content")
            calls += delta.tool_calls or []
            finish = chunk.choices[0].finish_reason or finish
        self.assertEqual([r for r in roles if r], ["assistant"], "the role comes once")
        self.assertTrue(reasoning.startswith('The user asks: "Think first'), reasoning)
        self.assertEqual(len(calls), 1)
        self.assertEqual(calls[0].function.name, "get_weather")
        self.assertEqual(json.loads(calls[0].function.arguments), {"city": "Paris"})
        self.assertEqual(finish, "tool_calls")
        self.assertGreater(usage.total_tokens, 0)

    def test_stream_helper_accumulates_and_the_tool_round_trip_answers(self):
        c = client()
        with c.chat.completions.stream(model="llama3.1", messages=ASK, tools=CHAT_TOOLS) as s:
            final = s.get_final_completion()
        choice = final.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        call = choice.message.tool_calls[0]
        self.assertTrue(call.id.startswith("call_"))
        self.assertEqual(call.function.name, "get_weather")
        self.assertEqual(json.loads(call.function.arguments), {"city": "Paris"})
        self.assertTrue(choice.message.reasoning_content.startswith("The user asks"))
        # The agent loop: the assistant turn as the SDK gives it back, then
        # the tool's result; the mock answers with the result.
        history = ASK + [
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
        ]
        answer = c.chat.completions.create(model="llama3.1", messages=history, tools=CHAT_TOOLS)
        self.assertEqual(answer.choices[0].finish_reason, "stop")
        self.assertIn('The tool answered: {"temp_c": 21}', answer.choices[0].message.content)


class ChatCompletion(unittest.TestCase):
    def test_a_plain_completion_names_its_generation(self):
        raw = client().chat.completions.with_raw_response.create(
            model="tiny", messages=[{"role": "user", "content": "What is rill?"}],
        )
        completion = raw.parse()
        self.assertEqual(completion.object, "chat.completion")
        self.assertEqual(completion.model, "tiny")
        self.assertTrue(completion.choices[0].message.content.startswith('You asked: "What is rill?".'))
        self.assertEqual(completion.choices[0].finish_reason, "stop")
        self.assertIsNone(completion.choices[0].message.tool_calls)
        self.assertGreater(completion.usage.completion_tokens, 0)
        generation = raw.headers["x-generation-id"]
        self.assertEqual(completion.id, "chatcmpl-" + generation)
        # The same answer, as rill's own event stream.
        url = f"{rill.base}/v1/streams/gen-{generation}?lastEventId=0"
        with urllib.request.urlopen(url, timeout=30) as res:
            body = res.read().decode()
        self.assertIn("event: done", body)
        self.assertIn('"finish_reason":"stop"', body)


class ChatErrors(unittest.TestCase):
    def test_a_model_the_server_does_not_allow_is_not_found(self):
        with self.assertRaises(openai.NotFoundError) as e:
            client().chat.completions.create(model="gpt-5", messages=ASK)
        self.assertEqual(e.exception.status_code, 404)
        self.assertEqual(e.exception.code, "model_not_found")
        self.assertIn("gpt-5", e.exception.message)

    def test_options_beyond_the_policy_are_bad_requests(self):
        with self.assertRaises(openai.BadRequestError) as e:
            client().chat.completions.create(model="llama3.1", messages=ASK, n=2)
        self.assertEqual(e.exception.param, "n")
        with self.assertRaises(openai.BadRequestError) as e:
            client().chat.completions.create(model="llama3.1", messages=ASK, max_tokens=1_000_000)
        self.assertEqual(e.exception.param, "max_tokens")
        with self.assertRaises(openai.BadRequestError) as e:
            client().chat.completions.create(
                model="llama3.1", messages=[{"role": "tool", "content": "orphan"}],
            )
        self.assertEqual(e.exception.param, "messages[0]")


if __name__ == "__main__":
    unittest.main()
