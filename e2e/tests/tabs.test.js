// Tabs of one origin share one connection per stream (rill.js): the server
// counts one subscriber however many tabs show the answer, every tab shows
// all of it, and when the tab holding the connection closes mid-answer
// another takes over from its last id, with no gap and no duplicate.
'use strict';

const assert = require('node:assert/strict');
const { after, before, test } = require('node:test');
const {
  PATIENCE_MS, launchBrowser, seedAnswer, startRill, waitForState, waitForText,
} = require('../support/rill');

let rill;
let browser;

before(async () => {
  // 100 ms a token: the planets answer takes about 7 s, time to open tabs.
  rill = await startRill(['--mock-delay-ms', '100']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await rill?.stop();
});

/** Starts a generation from outside the browser; its id. */
async function startGeneration() {
  const res = await fetch(`${rill.base}/v1/generations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'Tell me about the planets' }),
  });
  assert.equal(res.status, 201);
  return (await res.json()).id;
}

/** Subscribers the server counts on `stream` now (0 when it lists none). */
async function subscribers(stream) {
  const list = await (await fetch(`${rill.base}/v1/streams`)).json();
  return list.streams.find((s) => s.name === stream)?.subscribers ?? 0;
}

/** Polls `subscribers(stream)` until `stop()` resolves; every count seen. */
function watchSubscribers(stream) {
  const seen = [];
  let on = true;
  const loop = (async () => {
    while (on) {
      seen.push(await subscribers(stream));
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return { seen, async stop() { on = false; await loop; return seen; } };
}

/** A tab on the answer of generation `id`, with its requests for that stream recorded. */
async function openTab(context, id) {
  const page = await context.newPage();
  const streamRequests = [];
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === `/v1/streams/gen-${id}`) streamRequests.push(r.url());
  });
  await page.goto(`${rill.base}/?g=${encodeURIComponent(id)}`);
  return { page, streamRequests };
}

const isHolder = (page) => page.evaluate(() => window.rill.chat.follow?.holder === true);

test('two tabs on one answer: one subscriber, both show all of it', { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  const id = await startGeneration();
  const watch = watchSubscribers(`gen-${id}`);
  const a = await openTab(context, id);
  await waitForText(a.page, '#chat-answer', 30);
  const b = await openTab(context, id);
  await waitForText(b.page, '#chat-answer', 30);
  assert.equal(await subscribers(`gen-${id}`), 1, 'the server counts one subscriber');

  for (const tab of [a, b]) await waitForState(tab.page, '#chat-status', 'done');
  const seen = await watch.stop();
  const expected = seedAnswer();
  for (const tab of [a, b]) assert.equal(await tab.page.locator('#chat-answer').textContent(), expected);
  assert.equal(a.streamRequests.length, 1, 'the first tab opened the one connection');
  assert.equal(b.streamRequests.length, 0, 'the second tab opened none');
  assert.equal(Math.max(...seen), 1, `subscribers seen: ${seen}`);
  await context.close();
});

test('seven tabs on one answer: one connection, no frozen tab', { timeout: 90_000 }, async () => {
  // Over HTTP/1.1 a browser opens at most six connections to an origin:
  // seven EventSources would leave the seventh tab waiting.
  const context = await browser.newContext();
  const id = await startGeneration();
  const watch = watchSubscribers(`gen-${id}`);
  const tabs = [];
  for (let i = 0; i < 7; i++) tabs.push(await openTab(context, id));
  for (const tab of tabs) await waitForState(tab.page, '#chat-status', 'done');
  const seen = await watch.stop();

  const expected = seedAnswer();
  for (const [i, tab] of tabs.entries()) {
    assert.equal(await tab.page.locator('#chat-answer').textContent(), expected, `tab ${i + 1}`);
  }
  const requests = tabs.reduce((n, tab) => n + tab.streamRequests.length, 0);
  assert.equal(requests, 1, 'one EventSource request among seven tabs');
  assert.equal(Math.max(...seen), 1, `subscribers seen: ${seen}`);
  await context.close();
});

test('closing the tab that holds the connection: another takes over, no gap, no duplicate', { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  const id = await startGeneration();
  const a = await openTab(context, id);
  await waitForText(a.page, '#chat-answer', 20);
  assert.ok(await isHolder(a.page), 'the first tab holds the connection');
  const b = await openTab(context, id);
  const c = await openTab(context, id);
  await waitForText(b.page, '#chat-answer', 40);
  await waitForText(c.page, '#chat-answer', 40);
  assert.equal(b.streamRequests.length + c.streamRequests.length, 0, 'followers open no connection');

  const before = await b.page.locator('#chat-answer').textContent();
  await a.page.close();

  // One of the others takes over, resuming after the last id it handled.
  const deadline = Date.now() + PATIENCE_MS;
  while (b.streamRequests.length + c.streamRequests.length === 0) {
    assert.ok(Date.now() < deadline, 'no tab took over the connection');
    await new Promise((r) => setTimeout(r, 50));
  }
  const [took] = [...b.streamRequests, ...c.streamRequests];
  const resumedAfter = new URL(took).searchParams.get('lastEventId');
  assert.match(resumedAfter, new RegExp(`^${id}\\.[1-9]\\d*$`), `the new holder resumes after an event: ${took}`);

  for (const tab of [b, c]) await waitForState(tab.page, '#chat-status', 'done');
  const expected = seedAnswer();
  assert.ok(before.length < expected.length, 'the holder closed mid-answer');
  for (const tab of [b, c]) assert.equal(await tab.page.locator('#chat-answer').textContent(), expected);
  assert.equal(b.streamRequests.length + c.streamRequests.length, 1, 'one tab took over, once');
  await context.close();
});
