"""The Responses API through the official Python SDK against rill's mock
model: a stream through the strict helper, a tool call, background mode
with a cut connection resumed by `starting_after` (while running and after
the end, raw and through the helper), retrieve, and cancel."""

import json
import unittest

import openai
from openai import OpenAI

from support import RESPONSE_TOOLS, Rill

rill = None
shared = None


def setUpModule():
    global rill, shared
    # 20 ms a token: a few hundred ms per answer, time to cut and resume.
    rill = Rill("--mock-delay-ms", "20")
    shared = OpenAI(base_url=rill.base_url, api_key="sk-local", max_retries=0)


def tearDownModule():
    shared.close()
    rill.stop()


def client():
    return shared


STORY = "Tell me a story about a river"


class ResponsesStream(unittest.TestCase):
    def test_the_helper_accepts_the_stream_and_builds_the_response(self):
        deltas = []
        with client().responses.stream(model="llama3.1", input=STORY, instructions="Be kind.") as s:
            for event in s:
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
            final = s.get_final_response()
        self.assertEqual(final.status, "completed")
        self.assertEqual(final.instructions, "Be kind.")
        self.assertEqual(final.output_text, "".join(deltas))
        self.assertTrue(final.output_text.startswith(f'You asked: "{STORY}".'))
        self.assertEqual([o.type for o in final.output], ["message"])
        self.assertGreater(final.usage.output_tokens, 0)

    def test_reasoning_and_a_function_call(self):
        with client().responses.stream(
            model="llama3.1", input="Think: what is the weather in Paris?", tools=RESPONSE_TOOLS,
        ) as s:
            types = [e.type for e in s]
            final = s.get_final_response()
        self.assertEqual(types[:2], ["response.created", "response.in_progress"])
        self.assertIn("response.reasoning_text.delta", types)
        self.assertIn("response.function_call_arguments.done", types)
        self.assertEqual([o.type for o in final.output], ["reasoning", "function_call"])
        call = final.output[1]
        self.assertEqual(call.name, "get_weather")
        self.assertEqual(json.loads(call.arguments), {"city": "Paris"})
        # The tool's result goes back as a function_call_output item.
        answer = client().responses.create(
            model="llama3.1", tools=RESPONSE_TOOLS,
            input=[
                {"role": "user", "content": "What is the weather in Paris?"},
                {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
                {"type": "function_call_output", "call_id": call.call_id, "output": "21 C"},
            ],
        )
        self.assertEqual(answer.status, "completed")
        self.assertEqual(answer.output_text, "The tool answered: 21 C")

    def test_a_model_the_server_does_not_allow_is_not_found(self):
        with self.assertRaises(openai.NotFoundError):
            client().responses.create(model="gpt-5", input="hi")


class Background(unittest.TestCase):
    def cut_after(self, n):
        """Starts a background stream and drops the connection after
        sequence number `n`; returns the response id and the events seen."""
        seen = []
        with client().responses.create(model="llama3.1", input=STORY, background=True, stream=True) as s:
            for event in s:
                seen.append(event)
                if event.sequence_number >= n:
                    break
        self.assertEqual(seen[0].type, "response.created")
        self.assertEqual(seen[0].response.status, "queued")
        self.assertTrue(seen[0].response.background)
        return seen[0].response.id, seen

    def test_resume_after_a_cut_connection_while_it_runs_and_after_it_ended(self):
        c = client()
        rid, seen = self.cut_after(5)
        with c.responses.retrieve(rid, stream=True, starting_after=5) as s:
            rest = list(s)
        numbers = [e.sequence_number for e in seen] + [e.sequence_number for e in rest]
        self.assertEqual(numbers, list(range(len(numbers))), "no gap, no repeat")
        self.assertEqual(rest[-1].type, "response.completed")
        text = "".join(e.delta for e in seen + rest if e.type == "response.output_text.delta")
        self.assertEqual(text, rest[-1].response.output_text)
        # The answer ran on without any reader; after its end it replays
        # from the same numbers, on a plain retrieve too.
        with c.responses.retrieve(rid, stream=True, starting_after=10) as s:
            again = list(s)
        self.assertEqual(again[0].sequence_number, 11)
        self.assertEqual(
            [e.model_dump() for e in again], [e.model_dump() for e in rest if e.sequence_number > 10],
        )
        done = c.responses.retrieve(rid)
        self.assertEqual(done.status, "completed")
        self.assertEqual(done.output_text, text)

    def test_the_helper_resumes_by_replaying_from_the_start(self):
        rid, _ = self.cut_after(3)
        with client().responses.stream(response_id=rid, starting_after=3) as s:
            numbers = [e.sequence_number for e in s]
            final = s.get_final_response()
        self.assertEqual(numbers[0], 4)
        self.assertEqual(final.status, "completed")
        self.assertTrue(final.output_text.startswith("You asked"))

    def test_a_background_create_answers_at_once_and_can_be_cancelled(self):
        c = client()
        bg = c.responses.create(model="llama3.1", input=STORY, background=True)
        self.assertEqual(bg.status, "queued")
        self.assertEqual(bg.output, [])
        cancelled = c.responses.cancel(bg.id)
        self.assertEqual(cancelled.status, "cancelled")
        self.assertEqual(c.responses.cancel(bg.id).status, "cancelled", "cancelling twice is fine")
        self.assertEqual(c.responses.retrieve(bg.id).status, "cancelled")

    def test_only_background_responses_can_be_cancelled(self):
        c = client()
        r = c.responses.create(model="llama3.1", input="hi")
        self.assertEqual(r.status, "completed")
        with self.assertRaises(openai.BadRequestError):
            c.responses.cancel(r.id)
        with self.assertRaises(openai.NotFoundError):
            c.responses.retrieve("resp_0000000000000000")


if __name__ == "__main__":
    unittest.main()
