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
      () => Number(document.querySelector('#events_per_sec').textContent.replace(/[^\d.]/g, '')) >= 5,
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

  // Each chart has axes: 0 and its scale's top, with units, and the span.
  const units = { events: 'events/s', subscribers: 'subscribers', deliveries: 'deliveries/s' };
  for (const [chart, unit] of Object.entries(units)) {
    const plot = page.locator(`.plot:has(#chart-${chart})`);
    assert.equal(await plot.locator('.y-min').textContent(), '0', chart);
    const top = await page.locator(`#chart-${chart}-max`).textContent();
    assert.match(top, new RegExp(`^[\\d,.]+ ${unit}$`), `${chart}: ${top}`);
    assert.deepEqual(await plot.locator('.x-axis span').allTextContents(), ['-2 min', '-1 min', 'now'], chart);
  }
  // The top of the scale is the highest value shown: the two listeners and
  // the dashboard, and the busiest second of the publishes.
  assert.equal(await page.locator('#chart-subscribers-max').textContent(), '3 subscribers');
  // Label, data and line read at one instant, between two snapshots.
  const [top, peak, drawn] = await page.evaluate(() => [
    document.querySelector('#chart-events-max').textContent,
    Math.max(...series.events.map((p) => p.v)),
    document.querySelector('#chart-events polyline').getAttribute('points'),
  ]);
  assert.ok(peak >= 5, `events per second peaked at ${peak}`);
  const shown = Number(top.replace(/[^\d.]/g, ''));
  assert.ok(Math.abs(shown - peak) <= 0.05, `scale top "${top}", peak ${peak}`);
  // The peak is drawn on the top line (y = 4 of 100), nothing above it.
  const ys = drawn.split(' ').map((p) => Number(p.split(',')[1]));
  assert.equal(Math.min(...ys), 4, `the peak sits on the top line: ${drawn}`);
  assert.ok(ys.every((y) => y <= 100), drawn);

  // A listener leaves: the count follows.
  listeners[0].abort();
  await page.waitForFunction(() => document.querySelector('#subscribers').textContent === '2', null, { timeout: PATIENCE_MS });
  listeners[1].abort();
  await context.close();
});
