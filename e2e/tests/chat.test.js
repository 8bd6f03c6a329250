// The chat on `/`: a prompt streams its answer, model output is shown as
// text and never as markup, a reload mid-answer resumes the same answer
// exactly once (asking the server only for what came after), and Stop
// cancels the generation.
'use strict';

const assert = require('node:assert/strict');
const { after, before, test } = require('node:test');
const {
  launchBrowser, mockAnswer, seedAnswer, startRill, waitForState, waitForText,
} = require('../support/rill');

let rill;
let browser;

before(async () => {
  // 60 ms a token: the planets answer takes about 4 s, time to act mid-answer.
  rill = await startRill(['--mock-delay-ms', '60']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await rill?.stop();
});

/** A fresh page on `/`, with every POST it makes to /v1/generations counted. */
async function openChat() {
  const context = await browser.newContext();
  const page = await context.newPage();
  const starts = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/generations') starts.push(r);
  });
  await page.goto(`${rill.base}/`);
  return { context, page, starts };
}

async function ask(page, prompt) {
  await page.locator('#prompt').fill(prompt);
  await page.locator('#send').click();
  await page.waitForURL(/[?&]g=[^&]+/);
  return new URL(page.url()).searchParams.get('g');
}

test('a prompt streams its answer to done', { timeout: 60_000 }, async () => {
  const { context, page, starts } = await openChat();
  const prompt = 'What does rill do?';
  const id = await ask(page, prompt);
  await waitForState(page, '#chat-status', 'done');

  assert.equal(await page.locator('#chat-answer').textContent(), mockAnswer(prompt));
  assert.equal(await page.locator('#chat-asked').textContent(), `You: ${prompt}`);
  assert.match(await page.locator('#chat-status').textContent(), /^done · \d+ tokens/);
  assert.ok(id.length > 0);
  assert.equal(starts.length, 1);
  assert.equal(await page.locator('#send').isEnabled(), true, 'Send is back');
  assert.equal(await page.locator('#stop').isEnabled(), false, 'nothing to stop');
  await context.close();
});

test('markup in model output is shown as text, never run', { timeout: 60_000 }, async () => {
  const { context, page } = await openChat();
  // No spaces: the mock sends it as one token, so one innerHTML append would
  // create the element.
  const attack = '<img/src="x"/onerror="window.__injected=1">';
  await ask(page, attack);
  await waitForState(page, '#chat-status', 'done');

  const answer = page.locator('#chat-answer');
  assert.equal(await answer.textContent(), mockAnswer(attack));
  assert.ok((await answer.innerText()).includes(attack), 'the markup is visible as text');
  assert.equal(await page.locator('img').count(), 0, 'no img element anywhere');
  assert.equal(await answer.evaluate((el) => el.children.length), 0);
  assert.equal(await page.evaluate(() => window.__injected), undefined);
  await context.close();
});

test('a reload mid-answer resumes and shows the whole answer exactly once', { timeout: 60_000 }, async () => {
  const { context, page, starts } = await openChat();
  const id = await ask(page, 'Tell me about the planets');
  await waitForState(page, '#chat-status', 'streaming');
  await waitForText(page, '#chat-answer', 40);
  const partial = await page.locator('#chat-answer').textContent();

  const reads = [];
  page.on('request', (r) => { if (new URL(r.url()).pathname === `/v1/streams/gen-${id}`) reads.push(r.url()); });
  await page.reload();
  assert.equal(new URL(page.url()).searchParams.get('g'), id, 'the URL keeps the generation');
  await waitForState(page, '#chat-status', 'done');
  // The tab kept what it had shown: it asked only for what came after.
  assert.equal(reads.length, 1, `${reads}`);
  assert.match(new URL(reads[0]).searchParams.get('lastEventId'), new RegExp(`^${id}\\.[1-9]\\d*$`));

  const expected = seedAnswer();
  assert.ok(partial.length < expected.length, 'the reload came mid-answer');
  assert.equal(await page.locator('#chat-answer').textContent(), expected);
  assert.equal(await page.locator('#chat-asked').textContent(), 'You: Tell me about the planets');
  assert.equal(starts.length, 1, 'the reload resumed; it started nothing new');
  // With a generation in the URL the page resumes it instead of running the demo.
  assert.equal(await page.locator('#response').textContent(), '');
  assert.equal(await page.locator('#status').getAttribute('data-state'), 'idle');
  await context.close();
});

test('Stop cancels the generation and the answer ends there', { timeout: 60_000 }, async () => {
  const { context, page } = await openChat();
  const id = await ask(page, 'Tell me about the planets');
  await waitForState(page, '#chat-status', 'streaming');
  await waitForText(page, '#chat-answer', 20);
  await page.locator('#stop').click();
  await waitForState(page, '#chat-status', 'cancelled');

  const shown = await page.locator('#chat-answer').textContent();
  const expected = seedAnswer();
  assert.ok(shown.length < expected.length, 'the answer stopped short');
  assert.ok(expected.startsWith(shown), 'what was shown is the start of the answer');

  // The server agrees: read the stream again from its start with the
  // browser's own EventSource. It ends with done (cancelled) and holds
  // exactly what the page shows.
  const replay = await page.evaluate((url) => new Promise((resolve, reject) => {
    const source = new EventSource(url);
    let text = '';
    source.onmessage = (e) => { text += e.data; };
    source.addEventListener('done', (e) => { source.close(); resolve({ text, done: JSON.parse(e.data) }); });
    source.onerror = () => { source.close(); reject(new Error('replay failed')); };
  }), `/v1/streams/gen-${encodeURIComponent(id)}?lastEventId=0`);
  assert.equal(replay.done.done_reason, 'cancelled');
  assert.equal(replay.text, shown);
  await context.close();
});

test('a generation id that names no answer says so', { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${rill.base}/?g=no-such-generation`);
  // The server answers 404 for a generation stream that does not exist, so
  // the browser's EventSource fails for good and the page says so.
  await waitForState(page, '#chat-status', 'error');
  assert.match(await page.locator('#chat-status').textContent(), /not available/);
  assert.equal(await page.locator('#chat-answer').textContent(), '');
  assert.equal(await page.evaluate(() => window.rill.chat.source.readyState), 2, 'EventSource is CLOSED');
  assert.equal(await page.locator('#send').isEnabled(), true, 'a new prompt can be sent');
  await context.close();
});
