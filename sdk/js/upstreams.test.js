// Both entry points over real upstream wire formats: a fake Ollama
// streaming `thinking` and whole tool calls (NDJSON), and a fake
// OpenAI-compatible server streaming `reasoning_content` and two tool calls
// whose argument fragments interleave. The SDK's strict helpers accept what
// rill makes of either.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { CHAT_TOOLS, RESPONSE_TOOLS, fakeOllama, fakeOpenAi, startRill } from './support.js';

const ask = [{ role: 'user', content: 'Weather in Zürich and 東京?' }];

const upstreams = [
  {
    name: 'Ollama', backend: 'ollama', model: 'qwen3', make: fakeOllama, path: '/api/chat',
    reasoning: 'The user wants the weather in Zürich and 東京; I will call get_weather twice.',
    text: 'Let me check both cities.', ids: ['call_k3j9x0ab', 'call_p2m8q1zc'],
  },
  {
    name: 'OpenAI-compatible', backend: 'openai', model: 'deepseek-reasoner', make: fakeOpenAi,
    path: '/v1/chat/completions', reasoning: 'The user wants the weather in Zürich and 東京.',
    text: 'Checking both.', ids: ['call_a1b2', 'call_c3d4'],
  },
];

for (const u of upstreams) {
  describe(`${u.name} upstream`, () => {
    let fake;
    let rill;
    let client;
    before(async () => {
      fake = await u.make();
      const url = u.backend === 'openai' ? `${fake.base}/v1` : fake.base;
      rill = await startRill(['--backend', u.backend, '--backend-url', url, '--model', u.model,
        '--api-key-env', 'RILL_TEST_NO_KEY']);
      client = new OpenAI({ baseURL: rill.baseURL, apiKey: 'sk-local', maxRetries: 0 });
    });
    after(async () => { await rill?.stop(); await fake?.stop(); });

    test('a raw chat stream: reasoning, text and both calls', async () => {
      let reasoning = '';
      let text = '';
      const calls = [];
      let finish = null;
      const stream = await client.chat.completions.create({ model: u.model, messages: ask, tools: CHAT_TOOLS, stream: true });
      for await (const chunk of stream) {
        const d = chunk.choices[0]?.delta ?? {};
        reasoning += d.reasoning_content ?? '';
        text += d.content ?? '';
        calls.push(...(d.tool_calls ?? []));
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      assert.equal(reasoning, u.reasoning);
      assert.equal(text, u.text);
      assert.deepEqual(calls.map((c) => c.id), u.ids);
      assert.deepEqual(calls.map((c) => JSON.parse(c.function.arguments).city), ['Zürich', '東京']);
      assert.equal(finish, 'tool_calls');
      assert.equal(fake.requests.at(-1).path, u.path);
    });

    test('the chat helper and the responses helper finish', async () => {
      const chat = await client.chat.completions.stream({ model: u.model, messages: ask, tools: CHAT_TOOLS }).finalChatCompletion();
      assert.deepEqual(chat.choices[0].message.tool_calls.map((c) => c.id), u.ids);
      const final = await client.responses.stream({ model: u.model, input: ask, tools: RESPONSE_TOOLS }).finalResponse();
      assert.equal(final.status, 'completed');
      assert.deepEqual(final.output.map((o) => o.type), ['reasoning', 'message', 'function_call', 'function_call']);
      assert.equal(final.output_text, u.text);
      assert.deepEqual(final.output.slice(2).map((o) => o.call_id), u.ids);
    });
  });
}
