// rill.js on its own, imported by a page of rill's origin: a reload resumes
// after the last id the tab handled; `event: reset` reaches the page with
// what was missed and the answer starts over; a stream read to its end
// answers 204, which ends following without a reconnect loop.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, test } = require('node:test');
const { PATIENCE_MS, launchBrowser, seedAnswer, startRill } = require('../support/rill');

let rill;
let browser;

before(async () => {
  rill = await startRill(['--mock-delay-ms', '10']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await rill?.stop();
});

async function publish(stream, data) {
  const res = await fetch(`${rill.base}/v1/streams/${stream}`, { method: 'POST', body: data });
  assert.equal(res.status, 201);
  return (await res.json()).id;
}

/**
 * In `page`, follows `stream` with rill.js until `until` events (or the
 * end) were handled; what the callbacks saw, in order, and the outcome.
 */
function followIn(page, stream, options, until) {
  return page.evaluate(async ([stream, options, until, patience]) => {
    const { follow } = await import('/rill.js');
    const seen = [];
    let f;
    const outcome = await new Promise((resolve, reject) => {
      const enough = () => { if (seen.filter((s) => s[0] !== 'status').length >= until) f.close(); };
      f = follow(stream, {
        text: (t, ev) => { seen.push(['text', t, ev.id, !!ev.restored]); enough(); },
        reset: (info) => { seen.push(['reset', info]); enough(); },
        done: (d) => seen.push(['done', d.done_reason]),
        close: resolve,
      }, options);
      setTimeout(() => reject(new Error(`not finished: ${JSON.stringify(seen)}`)), patience);
    });
    return { seen, outcome, last: f.last };
  }, [stream, options, until, PATIENCE_MS]);
}

async function blankPage(context) {
  const page = await context.newPage();
  const requests = [];
  page.on('request', (r) => { if (/\/v1\/streams\/|\/sse/.test(r.url())) requests.push(r.url()); });
  page.on('response', (r) => { if (/\/v1\/streams\/|\/sse/.test(r.url())) requests.push(r.status()); });
  // Any page of rill's origin can import the module; this one runs nothing.
  await page.goto(`${rill.base}/healthz`);
  return { page, requests };
}

test('the module is served with its types', { timeout: 30_000 }, async () => {
  const js = await fetch(`${rill.base}/rill.js`);
  assert.equal(js.status, 200);
  assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.match(await js.text(), /export function follow/);
  const dts = await fetch(`${rill.base}/rill.d.ts`);
  assert.equal(dts.status, 200);
  assert.match(await dts.text(), /export declare function generate/);
});

test('the five lines of HTML in the README show the answer', { timeout: 60_000 }, async () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
  const html = readme.match(/```html\n([\s\S]*?from '\/rill\.js'[\s\S]*?)```/)?.[1];
  assert.ok(html, 'the README has an HTML example that imports /rill.js');
  assert.equal(html.trim().split('\n').length, 5);
  const context = await browser.newContext();
  const { page } = await blankPage(context);
  await page.setContent(html);
  const expected = seedAnswer();
  await page.waitForFunction((n) => document.getElementById('out').textContent.length >= n, expected.length, { timeout: PATIENCE_MS });
  assert.equal(await page.locator('#out').textContent(), expected);
  await context.close();
});

test('a reload resumes after the last id handled, showing each event once', { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  const { page, requests } = await blankPage(context);
  const stream = `reload-${Date.now()}`;
  const ids = [await publish(stream, 'a'), await publish(stream, 'b')];
  const first = await followIn(page, stream, { from: '0' }, 2);
  assert.deepEqual(first.seen.map((s) => s.slice(0, 3)), [['text', 'a', ids[0]], ['text', 'b', ids[1]]]);

  ids.push(await publish(stream, 'c'));
  requests.length = 0;
  await page.reload();
  const second = await followIn(page, stream, { from: '0' }, 3);
  assert.deepEqual(second.seen, [
    ['text', 'a', ids[0], true],
    ['text', 'b', ids[1], true],
    ['text', 'c', ids[2], false],
  ], 'a and b from this tab\'s storage, c from the server');
  const asked = requests.filter((r) => typeof r === 'string');
  assert.equal(asked.length, 1, `${asked}`);
  assert.equal(new URL(asked[0]).searchParams.get('lastEventId'), ids[1], 'resumed after b');
  await context.close();
});

test('event: reset reaches the page with what was missed, and the answer starts over', { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  const { page } = await blankPage(context);
  const stream = `reset-${Date.now()}`;
  await publish(stream, 'old 1 ');
  const old = await publish(stream, 'old 2');
  const first = await followIn(page, stream, { from: '0' }, 2);
  assert.equal(first.last, old);

  // The stream is made anew: the id this tab keeps names nothing in it.
  const del = await fetch(`${rill.base}/v1/streams/${stream}`, { method: 'DELETE' });
  assert.equal(del.status, 204);
  const fresh = await publish(stream, 'new');
  await page.reload();
  const second = await followIn(page, stream, { from: '0' }, 4);
  const [restored1, restored2, reset, text] = second.seen;
  assert.deepEqual([restored1[0], restored1[3], restored2[0], restored2[3]], ['text', true, 'text', true]);
  assert.equal(reset[0], 'reset');
  assert.equal(reset[1].reason, 'unknown');
  assert.equal(reset[1].requested, old);
  assert.deepEqual(text.slice(0, 3), ['text', 'new', fresh]);
  await context.close();
});

test('a stream read to its end answers 204, and following ends without a reconnect loop', { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  const { page, requests } = await blankPage(context);
  // keep: 'id': the tab keeps only where it was, so a reload asks the server.
  const first = await followIn(page, '/sse', { from: '0', keep: 'id' }, Infinity);
  assert.equal(first.outcome.kind, 'done');
  assert.equal(first.seen.filter((s) => s[0] === 'text').map((s) => s[1]).join(''), seedAnswer());

  requests.length = 0;
  await page.reload();
  const second = await followIn(page, '/sse', { from: '0', keep: 'id' }, Infinity);
  assert.deepEqual(second.outcome, { kind: 'complete', status: 204 });
  assert.deepEqual(second.seen, [], 'nothing shown twice');
  // The EventSource's request, then rill.js asking why it closed; no more.
  assert.deepEqual(requests.filter((r) => typeof r === 'number'), [204, 204]);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(requests.length, 4, `${requests}`);
  await context.close();
});
