// The Responses API through the official JS SDK against rill's mock model:
// the strict stream helper, reasoning and a function call, background mode
// with a cut connection resumed by `starting_after`, retrieve and cancel.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import { RESPONSE_TOOLS, startRill } from './support.js';

let rill;
let client;
before(async () => {
  // 20 ms a token: a few hundred ms per answer, time to cut and resume.
  rill = await startRill(['--mock-delay-ms', '20']);
  client = new OpenAI({ baseURL: rill.baseURL, apiKey: 'sk-local', maxRetries: 0 });
});
after(() => rill?.stop());

const story = 'Tell me a story about a river';

test('the stream helper accepts every event and builds the response', async () => {
  const stream = client.responses.stream({ model: 'llama3.1', input: story });
  let text = '';
  stream.on('response.output_text.delta', (e) => { text += e.delta; });
  const final = await stream.finalResponse();
  assert.equal(final.status, 'completed');
  assert.equal(final.output_text, text);
  assert.ok(final.output_text.startsWith(`You asked: "${story}".`));
});

test('reasoning and a function call, then the tool result', async () => {
  const final = await client.responses
    .stream({ model: 'llama3.1', input: 'Think: what is the weather in Paris?', tools: RESPONSE_TOOLS })
    .finalResponse();
  assert.deepEqual(final.output.map((o) => o.type), ['reasoning', 'function_call']);
  const call = final.output[1];
  assert.deepEqual(JSON.parse(call.arguments), { city: 'Paris' });
  const answer = await client.responses.create({
    model: 'llama3.1', tools: RESPONSE_TOOLS,
    input: [
      { role: 'user', content: 'What is the weather in Paris?' },
      { type: 'function_call', call_id: call.call_id, name: call.name, arguments: call.arguments },
      { type: 'function_call_output', call_id: call.call_id, output: '21 C' },
    ],
  });
  assert.equal(answer.output_text, 'The tool answered: 21 C');
});

/** Starts a background stream and drops it after sequence number `n`. */
async function cutAfter(n) {
  const seen = [];
  const stream = await client.responses.create({ model: 'llama3.1', input: story, background: true, stream: true });
  for await (const e of stream) {
    seen.push(e);
    if (e.sequence_number >= n) break;
  }
  assert.equal(seen[0].type, 'response.created');
  assert.equal(seen[0].response.status, 'queued');
  return { id: seen[0].response.id, seen };
}

test('background: resume after a cut connection, while it runs and after it ended', async () => {
  const { id, seen } = await cutAfter(5);
  const rest = [];
  for await (const e of await client.responses.retrieve(id, { stream: true, starting_after: 5 })) rest.push(e);
  const numbers = [...seen, ...rest].map((e) => e.sequence_number);
  assert.deepEqual(numbers, numbers.map((_, i) => i), 'no gap, no repeat');
  assert.equal(rest.at(-1).type, 'response.completed');
  const again = [];
  for await (const e of await client.responses.retrieve(id, { stream: true, starting_after: 10 })) again.push(e);
  assert.deepEqual(again, rest.filter((e) => e.sequence_number > 10));
  const done = await client.responses.retrieve(id);
  assert.equal(done.status, 'completed');
  const text = [...seen, ...rest].filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
  assert.equal(done.output_text, text);
  assert.equal(rest.at(-1).response.output[0].content[0].text, text);
});

test('background: the helper resumes by replaying from the start', async () => {
  const { id } = await cutAfter(3);
  const numbers = [];
  const stream = client.responses.stream({ response_id: id, starting_after: 3 });
  stream.on('event', (e) => numbers.push(e.sequence_number));
  const final = await stream.finalResponse();
  assert.equal(numbers[0], 4);
  assert.equal(final.status, 'completed');
});

test('background: create answers at once, cancel stops it, twice is fine', async () => {
  const bg = await client.responses.create({ model: 'llama3.1', input: story, background: true });
  assert.equal(bg.status, 'queued');
  assert.deepEqual(bg.output, []);
  assert.equal((await client.responses.cancel(bg.id)).status, 'cancelled');
  assert.equal((await client.responses.cancel(bg.id)).status, 'cancelled');
  assert.equal((await client.responses.retrieve(bg.id)).status, 'cancelled');
  await assert.rejects(client.responses.retrieve('resp_0000000000000000'), OpenAI.NotFoundError);
});
