// The dashboard on `/dashboard`: its numbers and charts follow what the node
// is doing, updated over rill's own event stream.
'use strict';

const assert = require('node:assert/strict');
const { after, before, test } = require('node:test');
const { launchBrowser, startRill, PATIENCE_MS } = require('../support/rill');

let rill;
let browser;

before(async () => {
  rill = await startRill();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await rill?.stop();
});

async function publish(stream, data) {
  const res = await fetch(`${rill.base}/v1/streams/${stream}`, { method: 'POST', body: data });
  assert.equal(res.status, 201);
}

test('the dashboard shows subscribers, event rates and the busiest streams, live', { timeout: 60_000 }, async () => {
  // Two listeners on one stream, held open by fetch for the whole test.
  const listeners = [new AbortController(), new AbortController()];
  for (const ctl of listeners) {
    const res = await fetch(`${rill.base}/v1/streams/orders.eu`, {
      headers: { accept: 'text/event-stream' }, signal: ctl.signal,
    });
    assert.equal(res.status, 200);
  }
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${rill.base}/dashboard`);
  await page.waitForFunction(() => document.querySelector('#status')?.dataset.state === 'live', null, { timeout: PATIENCE_MS });

  // Traffic while the page watches, until a snapshot shows it.
  const pump = setInterval(() => { publish('orders.eu', 'tick').catch(() => {}); }, 50);
  try {
    await page.waitForFunction(
      () => Number(document.querySelector('#events_per_sec').textContent.replace(/[^\d.]/g, '')) > 0,
      null, { timeout: PATIENCE_MS },
    );
  } finally {
    clearInterval(pump);
  }
  // Two listeners plus the dashboard itself.
  assert.equal(await page.locator('#subscribers').textContent(), '3');
  assert.ok(Number(await page.locator('#streams').textContent()) >= 1);
  const rows = await page.locator('#top tr').allTextContents();
  assert.ok(rows.some((r) => r.includes('orders.eu') && r.includes('2')), `busiest streams: ${rows}`);
  // The charts have drawn a line from several snapshots.
  await page.waitForFunction(() => Number(document.querySelector('#chart-events').dataset.points) >= 2, null, { timeout: PATIENCE_MS });
  const points = await page.locator('#chart-events polyline').getAttribute('points');
  assert.ok(points.split(' ').length >= 2, points);

  // A listener leaves: the count follows.
  listeners[0].abort();
  await page.waitForFunction(() => document.querySelector('#subscribers').textContent === '2', null, { timeout: PATIENCE_MS });
  listeners[1].abort();
  await context.close();
});
