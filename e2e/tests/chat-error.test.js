// A model server that cannot be reached: the generation ends with
// `event: failed`, and the page says so instead of waiting.
'use strict';

const assert = require('node:assert/strict');
const net = require('node:net');
const { after, before, test } = require('node:test');
const { launchBrowser, startRill, waitForState } = require('../support/rill');

let rill;
let browser;

/** A loopback port with nothing listening on it. */
async function closedPort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

before(async () => {
  const port = await closedPort();
  rill = await startRill(['--backend', 'ollama', '--backend-url', `http://127.0.0.1:${port}`]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await rill?.stop();
});

test('an unreachable model ends the answer with an error the page shows', { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${rill.base}/`);
  await page.locator('#prompt').fill('Is anybody there?');
  await page.locator('#send').click();
  await waitForState(page, '#chat-status', 'error');
  const status = await page.locator('#chat-status').textContent();
  assert.match(status, /model server/i, `the status explains the failure: ${status}`);
  assert.equal(await page.locator('#chat-answer').textContent(), '');
  assert.equal(await page.locator('#send').isEnabled(), true, 'Send is back for another try');
  await context.close();
});
