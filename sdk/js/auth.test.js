// With auth on, the SDK's API key is the JWT, sent as `Authorization:
// Bearer`. Starting needs `generate`; a response is its starter's.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import { jwt, startRill } from './support.js';

const SECRET = 'test-only-secret-0123456789abcdef';
let rill;
before(async () => { rill = await startRill(['--auth-jwt-secret', SECRET, '--mock-delay-ms', '2']); });
after(() => rill?.stop());

const client = (apiKey) => new OpenAI({ baseURL: rill.baseURL, apiKey, maxRetries: 0 });
const ask = [{ role: 'user', content: 'hi' }];

test('the API key carries the token; a missing right is refused', async () => {
  const alice = client(jwt(SECRET, { sub: 'alice', rill: { generate: true } }));
  const r = await alice.chat.completions.create({ model: 'llama3.1', messages: ask });
  assert.match(r.choices[0].message.content, /^You asked: "hi"/);
  await assert.rejects(
    client('sk-not-a-jwt').chat.completions.create({ model: 'llama3.1', messages: ask }),
    (e) => e instanceof OpenAI.AuthenticationError && e.type === 'authentication_error',
  );
  const reader = client(jwt(SECRET, { sub: 'carol', rill: { subscribe: ['news'] } }));
  await assert.rejects(reader.responses.create({ model: 'llama3.1', input: 'hi' }), OpenAI.PermissionDeniedError);
});

test("a response is its starter's", async () => {
  const alice = client(jwt(SECRET, { sub: 'alice', rill: { generate: true } }));
  const bob = client(jwt(SECRET, { sub: 'bob', rill: { generate: true } }));
  const r = await alice.responses.create({ model: 'llama3.1', input: 'hi', background: true });
  await assert.rejects(bob.responses.retrieve(r.id), OpenAI.PermissionDeniedError);
  await assert.rejects(bob.responses.cancel(r.id), OpenAI.PermissionDeniedError);
  const final = await alice.responses.stream({ response_id: r.id }).finalResponse();
  assert.equal(final.status, 'completed');
});
