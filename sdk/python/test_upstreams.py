"""Both SDK entry points over real upstream wire formats: a fake Ollama
streaming `thinking` and whole tool calls as NDJSON, and a fake
OpenAI-compatible server streaming `reasoning_content` and two tool calls
whose argument fragments interleave. rill turns either into the same
generation, and the SDK sees the same, strict-helper-proof answer."""

import json
import unittest

from openai import OpenAI

from support import CHAT_TOOLS, RESPONSE_TOOLS, FakeModel, Rill

ASK = [{"role": "user", "content": "Weather in Zürich and 東京?"}]
CITIES = [{"city": "Zürich"}, {"city": "東京"}]


class Upstream:
    """Runs each test against rill in front of the fake upstream `make()`."""

    backend = model = None

    @classmethod
    def setUpClass(cls):
        cls.fake = cls.make()
        url = cls.fake.base + ("/v1" if cls.backend == "openai" else "")
        cls.rill = Rill("--backend", cls.backend, "--backend-url", url, "--model", cls.model,
                        "--api-key-env", "RILL_TEST_NO_KEY")
        cls.client = OpenAI(base_url=cls.rill.base_url, api_key="sk-local", max_retries=0)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.rill.stop()
        cls.fake.stop()

    def test_chat_stream_carries_reasoning_text_and_both_calls(self):
        stream = self.client.chat.completions.create(
            model=self.model, messages=ASK, tools=CHAT_TOOLS, stream=True,
            stream_options={"include_usage": True},
        )
        reasoning, text, calls, finish, usage = "", "", [], None, None
        for chunk in stream:
            if not chunk.choices:
                usage = chunk.usage
                continue
            delta = chunk.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            text += delta.content or ""
            calls += delta.tool_calls or []
            finish = chunk.choices[0].finish_reason or finish
        self.assertEqual(reasoning, self.reasoning)
        self.assertEqual(text, self.text)
        self.assertEqual([c.index for c in calls], [0, 1])
        self.assertEqual([c.id for c in calls], self.ids)
        self.assertEqual([json.loads(c.function.arguments)["city"] for c in calls], ["Zürich", "東京"])
        self.assertEqual(finish, "tool_calls")
        self.assertEqual(usage.prompt_tokens, self.prompt_tokens)
        # What rill asked the upstream for: the tools, in its own dialect.
        path, body = self.fake.requests[-1]
        self.assertEqual(path, self.path)
        self.assertEqual(body["tools"][0]["function"]["name"], "get_weather")

    def test_chat_helper_and_a_plain_completion(self):
        with self.client.chat.completions.stream(model=self.model, messages=ASK, tools=CHAT_TOOLS) as s:
            final = s.get_final_completion()
        message = final.choices[0].message
        self.assertEqual([c.id for c in message.tool_calls], self.ids)
        plain = self.client.chat.completions.create(model=self.model, messages=ASK, tools=CHAT_TOOLS)
        self.assertEqual(plain.choices[0].message.reasoning_content, self.reasoning)
        self.assertEqual(plain.choices[0].message.content, self.text)
        self.assertEqual(
            [json.loads(c.function.arguments)["city"] for c in plain.choices[0].message.tool_calls],
            ["Zürich", "東京"],
        )

    def test_responses_helper_builds_reasoning_message_and_calls(self):
        with self.client.responses.stream(model=self.model, input=ASK, tools=RESPONSE_TOOLS) as s:
            final = s.get_final_response()
        self.assertEqual(final.status, "completed")
        self.assertEqual([o.type for o in final.output], ["reasoning", "message", "function_call", "function_call"])
        self.assertEqual(final.output[0].content[0].text, self.reasoning)
        self.assertEqual(final.output_text, self.text)
        self.assertEqual([o.call_id for o in final.output[2:]], self.ids)
        self.assertEqual([json.loads(o.arguments)["city"] for o in final.output[2:]], ["Zürich", "東京"])


class Ollama(Upstream, unittest.TestCase):
    backend, model, path = "ollama", "qwen3", "/api/chat"
    make = FakeModel.ollama
    reasoning = "The user wants the weather in Zürich and 東京; I will call get_weather twice."
    text = "Let me check both cities."
    ids = ["call_k3j9x0ab", "call_p2m8q1zc"]
    prompt_tokens = 26


class OpenAiCompatible(Upstream, unittest.TestCase):
    backend, model, path = "openai", "deepseek-reasoner", "/v1/chat/completions"
    make = FakeModel.openai
    reasoning = "The user wants the weather in Zürich and 東京."
    text = "Checking both."
    ids = ["call_a1b2", "call_c3d4"]
    prompt_tokens = 31


if __name__ == "__main__":
    unittest.main()
