// The chat shows a generation's reasoning (collapsed) and its tool calls,
// as text only, whoever started the generation: here an agent that offered
// tools, with the page opened on the generation's id.
'use strict';

const assert = require('node:assert/strict');
const { after, before, test } = require('node:test');
const { launchBrowser, startRill, waitForState } = require('../support/rill');

let rill;
let browser;

before(async () => {
  rill = await startRill(['--mock-delay-ms', '20']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await rill?.stop();
});

/** Starts a generation as an agent would; returns its id. */
async function start(body) {
  const res = await fetch(`${rill.base}/v1/generations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 201);
  return (await res.json()).id;
}

const params = { type: 'object', properties: { city: { type: 'string' } } };

test('reasoning is collapsed, tool calls are listed, markup stays text', { timeout: 60_000 }, async () => {
  const attack = '<img/src="x"/onerror="window.__injected=1">';
  const prompt = `Think: ${attack} weather in Paris?`;
  const name = '<b>get_weather</b>';
  const id = await start({ prompt, tools: [{ type: 'function', function: { name, parameters: params } }] });
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${rill.base}/?g=${encodeURIComponent(id)}`);
  await waitForState(page, '#chat-status', 'done');

  const reasoning = page.locator('#chat-reasoning');
  assert.equal(await reasoning.isVisible(), true);
  assert.equal(await reasoning.evaluate((el) => el.open), false, 'collapsed');
  const thought = `The user asks: "${prompt}". I should call ${name}.`;
  assert.equal(await page.locator('#chat-reasoning .reasoning-text').textContent(), thought);
  assert.equal(await page.locator('#chat-reasoning .reasoning-text').isVisible(), false);
  await page.locator('#chat-reasoning summary').click();
  assert.equal(await page.locator('#chat-reasoning .reasoning-text').isVisible(), true, 'opens on click');

  const calls = page.locator('#chat-tools li');
  assert.equal(await calls.count(), 1);
  assert.equal(await calls.first().textContent(), `${name}({"city":"Paris"})`);
  assert.equal(await page.locator('#chat-answer').textContent(), '', 'a call, no text');
  assert.match(await page.locator('#chat-status').textContent(), /waiting for tool results/);

  assert.equal(await page.locator('img, b').count(), 0, 'no element from model output');
  assert.equal(await page.evaluate(() => window.__injected), undefined);
  await context.close();
});

test('an answer without reasoning or calls shows neither', { timeout: 60_000 }, async () => {
  const id = await start({
    messages: [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', name: 'get_weather', arguments: { city: 'Paris' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '21 C' },
    ],
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${rill.base}/?g=${encodeURIComponent(id)}`);
  await waitForState(page, '#chat-status', 'done');
  assert.equal(await page.locator('#chat-answer').textContent(), 'The tool answered: 21 C');
  assert.equal(await page.locator('#chat-reasoning').isHidden(), true);
  assert.equal(await page.locator('#chat-tools').isHidden(), true);
  await context.close();
});
