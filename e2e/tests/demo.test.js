// The seed's demo on `/`: the recorded answer streams into the page with its
// line breaks, the EventSource closes on `done`, and a connection cut
// mid-answer resumes with nothing lost and nothing repeated.
'use strict';

const assert = require('node:assert/strict');
const { after, before, test } = require('node:test');
const { launchBrowser, seedAnswer, startProxy, startRill, waitForState, waitForText } = require('../support/rill');

let rill;
let browser;

before(async () => {
  // 40 ms a token: slow enough to act mid-answer; retry 500 ms: quick reconnects.
  rill = await startRill(['--mock-delay-ms', '40', '--retry-ms', '500']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await rill?.stop();
});

/** Runs `fn(proxy, page)` with `/` loaded through a fresh cutting proxy. */
async function throughProxy(fn) {
  const proxy = await startProxy(rill.base);
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await page.goto(`${proxy.base}/`);
    await fn(proxy, page);
  } finally {
    await context.close();
    await proxy.stop();
  }
}

test('the page shows the whole recorded answer with its line breaks, then closes', { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const sseRequests = [];
  page.on('request', (r) => { if (new URL(r.url()).pathname === '/sse') sseRequests.push(r); });

  await page.goto(`${rill.base}/`);
  await waitForState(page, '#status', 'done');

  const expected = seedAnswer();
  assert.ok(expected.includes('planets:\n\n '), 'the recording has its blank line');
  assert.equal(await page.locator('#response').textContent(), expected);
  // innerText is what is rendered: the line breaks survive white-space handling.
  assert.equal(await page.locator('#response').innerText(), expected);

  // Two visible paragraphs: the second starts at least one blank line below the first.
  const layout = await page.evaluate(() => {
    const el = document.getElementById('response');
    const node = el.firstChild;
    const cut = node.data.indexOf('\n\n');
    const first = document.createRange();
    first.setStart(node, 0);
    first.setEnd(node, cut);
    const second = document.createRange();
    second.setStart(node, cut + 2);
    second.setEnd(node, node.data.length);
    return {
      textNodes: el.childNodes.length,
      firstBottom: first.getBoundingClientRect().bottom,
      secondTop: second.getBoundingClientRect().top,
      lineHeight: parseFloat(getComputedStyle(el).lineHeight),
    };
  });
  assert.equal(layout.textNodes, 1, 'the answer is one text node, no elements');
  assert.ok(
    layout.secondTop - layout.firstBottom >= layout.lineHeight * 0.9,
    `a blank line separates the paragraphs: ${JSON.stringify(layout)}`,
  );

  assert.equal(await page.evaluate(() => window.rill.demo.source.readyState), 2, 'EventSource is CLOSED');
  assert.equal(sseRequests.length, 1, 'one connection to /sse, no reconnect after done');
  assert.match(await page.locator('#status').textContent(), /^done/);
  await context.close();
});

test('a connection cut mid-answer resumes with no token lost or repeated', { timeout: 60_000 }, async () => {
  await throughProxy(async (proxy, page) => {
    await waitForState(page, '#status', 'streaming');
    await waitForText(page, '#response', 60);
    const before = await page.locator('#response').textContent();
    proxy.cut();

    await waitForState(page, '#status', 'done');
    const expected = seedAnswer();
    assert.ok(before.length < expected.length, 'the cut came mid-answer');
    assert.equal(await page.locator('#response').textContent(), expected);

    // rill.js asks for the answer from its start (?lastEventId=0); the
    // Last-Event-ID header of a reconnect takes precedence.
    const sse = proxy.requests().filter((h) => /^GET \/sse[ ?]/.test(h));
    assert.ok(sse.length >= 2, `the browser reconnected:\n${sse.join('\n\n')}`);
    const resumed = sse.slice(1).every((h) => /^last-event-id: *[^.\s]+\.\d+$/im.test(h));
    assert.ok(resumed, `every reconnect carries Last-Event-ID:\n${sse.join('\n\n')}`);
  });
});

test('a reconnect with an id of another answer gets event: reset, which clears the page', { timeout: 60_000 }, async () => {
  await throughProxy(async (proxy, page) => {
    await waitForText(page, '#response', 60);
    const tag = proxy.received().match(/^id: ([^.\s]+)\.\d+$/m)?.[1];
    assert.ok(tag, 'the /sse events carry the recording in their ids');

    // The browser reconnects with an id of an answer this server does not
    // play (as after an upgrade that changed the recording).
    proxy.rewrite((text) => text.replace(/^(last-event-id: *)[^.\s]+\./im, '$1ffffffff.'));
    const partial = await page.locator('#response').textContent();
    proxy.cut();

    await waitForState(page, '#status', 'done');
    const expected = seedAnswer();
    assert.ok(partial.length > 0 && partial.length < expected.length, 'the page held part of the answer');
    assert.equal(await page.locator('#response').textContent(), expected, 'cleared, then one whole answer');
    assert.match(proxy.received(), /event: reset\ndata: .*"reason":"unknown"/);
    const sse = proxy.requests().filter((h) => /^GET \/sse[ ?]/.test(h));
    assert.match(sse.at(-1), /^last-event-id: ffffffff\.\d+$/im);
  });
});
