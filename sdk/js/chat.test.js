// Chat Completions through the official JS SDK against rill's mock model:
// a raw stream with reasoning and a tool call, the strict stream helper,
// the tool round trip, a plain completion, and errors as the SDK's classes.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import { CHAT_TOOLS, startRill } from './support.js';

let rill;
let client;
before(async () => {
  rill = await startRill(['--mock-delay-ms', '2', '--allowed-model', 'llama3.1,tiny']);
  client = new OpenAI({ baseURL: rill.baseURL, apiKey: 'sk-local', maxRetries: 0 });
});
after(() => rill?.stop());

const ask = [{ role: 'user', content: 'Think first: what is the weather in Paris?' }];

test('a raw stream: reasoning, one whole tool call, finish and usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'llama3.1', messages: ask, tools: CHAT_TOOLS, stream: true,
    stream_options: { include_usage: true },
  });
  let reasoning = '';
  const calls = [];
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (!chunk.choices.length) { usage = chunk.usage; continue; }
    const d = chunk.choices[0].delta;
    reasoning += d.reasoning_content ?? '';
    calls.push(...(d.tool_calls ?? []));
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  assert.match(reasoning, /^The user asks: "Think first/);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(calls[0].function.arguments), { city: 'Paris' });
  assert.equal(finish, 'tool_calls');
  assert.ok(usage.total_tokens > 0);
});

test('the stream helper finishes, and the tool round trip answers', async () => {
  const final = await client.chat.completions
    .stream({ model: 'llama3.1', messages: ask, tools: CHAT_TOOLS })
    .finalChatCompletion();
  const choice = final.choices[0];
  assert.equal(choice.finish_reason, 'tool_calls');
  const call = choice.message.tool_calls[0];
  assert.match(call.id, /^call_/);
  const answer = await client.chat.completions.create({
    model: 'llama3.1', tools: CHAT_TOOLS,
    messages: [...ask, choice.message, { role: 'tool', tool_call_id: call.id, content: '{"temp_c": 21}' }],
  });
  assert.equal(answer.choices[0].finish_reason, 'stop');
  assert.match(answer.choices[0].message.content, /The tool answered: \{"temp_c": 21\}/);
});

test('a plain completion names its generation', async () => {
  const { data, response } = await client.chat.completions
    .create({ model: 'tiny', messages: [{ role: 'user', content: 'What is rill?' }] })
    .withResponse();
  assert.equal(data.object, 'chat.completion');
  assert.equal(data.model, 'tiny');
  assert.match(data.choices[0].message.content, /^You asked: "What is rill\?"\./);
  const id = response.headers.get('x-generation-id');
  assert.equal(data.id, `chatcmpl-${id}`);
  const stream = await fetch(`${rill.base}/v1/streams/gen-${id}?lastEventId=0`);
  assert.match(await stream.text(), /event: done/);
});

test('errors are the SDK classes a caller expects', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'gpt-5', messages: ask }),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404 && e.code === 'model_not_found',
  );
  await assert.rejects(
    client.chat.completions.create({ model: 'llama3.1', messages: ask, n: 3 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'n',
  );
});
