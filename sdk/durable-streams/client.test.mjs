// The official Durable Streams TypeScript client (@durable-streams/client)
// against rill's /v1/stream/{name}: create, append, catch-up reads and the
// offsets they return, live tails (long-poll and SSE), reads that survive a
// cut connection, JSON messages, the idempotent producer, and a generation
// read as a protocol stream until its terminal event closes it.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DurableStream, FetchError, IdempotentProducer, StaleEpochError, stream,
} from '@durable-streams/client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { PATIENCE_MS, startRill } from '../js/support.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** A long-poll answers 204 after this long: far above how fast a live reader must see an append. */
const LONG_POLL_SECS = 10;
/** Each test's own bound. */
const TEST_MS = 60_000;

let rill;
beforeAll(async () => {
  rill = await startRill(['--long-poll-secs', String(LONG_POLL_SECS), '--mock-delay-ms', '20']);
});
afterAll(() => rill?.stop());

let serial = 0;
/** A stream URL no other test uses (on rill, or on `base`). */
function freshUrl(tag, base = rill.base) {
  serial += 1;
  return `${base}/v1/stream/ts-${tag}-${process.pid}-${Date.now()}-${serial}`;
}

/** `promise`, or a rejection naming `what` after `ms`. */
function within(ms, promise, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Resolves once `check()` is true; polls every 10 ms, fails after PATIENCE_MS. */
async function until(check, what) {
  const end = Date.now() + PATIENCE_MS;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A fetch that records the URL of every request it makes, and when it made it. */
function recordingFetch() {
  const requests = [];
  const fetchFn = (input, init) => {
    requests.push({ url: new URL(String(input)), at: Date.now() });
    return fetch(input, init);
  };
  return { fetch: fetchFn, requests };
}

/** Backoff for reads through a proxy that cuts them: quick, and bounded. */
const QUICK_BACKOFF = { initialDelay: 20, maxDelay: 300, multiplier: 1.5, maxRetries: 50 };

/**
 * A TCP proxy on 127.0.0.1 in front of `base`. `cutMidResponse()` arms it:
 * the next bytes rill sends through it are passed on only in part, and then
 * every open connection is destroyed, both sides. It resolves with the
 * number of connections cut.
 */
async function startProxy(base) {
  const target = new URL(base);
  const pairs = new Set();
  let armed = null;
  const cutAll = () => {
    const n = pairs.size;
    for (const { client, upstream } of [...pairs]) {
      client.destroy();
      upstream.destroy();
    }
    pairs.clear();
    return n;
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    const pair = { client, upstream };
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.on('data', (chunk) => {
      if (armed) {
        const fire = armed;
        armed = null;
        client.write(chunk.subarray(0, chunk.length >> 1), () => fire(cutAll()));
        return;
      }
      if (!client.write(chunk)) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    cutMidResponse() {
      return new Promise((resolve) => { armed = resolve; });
    },
    stop() {
      armed = null;
      cutAll();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * Subscribes to the JSON batches of `res`; resolves with how the read
 * ended: `closed` once a batch says the stream is closed, `ended` when the
 * read stopped without saying so. Rejects with the error that ended it.
 * (The client settles `res.closed` when its last response is fetched,
 * which can be before the subscriber has that response's batch.)
 */
async function subscribeUntilClosed(res, onBatch) {
  let sawEnd;
  const end = new Promise((resolve) => { sawEnd = resolve; });
  res.subscribeJson((batch) => {
    onBatch(batch);
    if (batch.streamClosed) sawEnd('closed');
  });
  const first = await within(PATIENCE_MS, Promise.race([end, res.closed.then(() => 'ended')]), 'a read');
  if (first === 'closed') return first;
  return within(2000, end, 'the batch of a finished read').catch(() => 'ended');
}

/**
 * Reads the JSON stream at `url` from `offset` until it is closed, as an
 * application that keeps the offset of the last batch it handled: when a
 * read fails, a new read starts from that offset. Returns the items, the
 * number of reads it took and the errors that ended the others.
 */
async function readUntilClosed(url, { live, offset = '-1', onItems = () => {} }) {
  const items = [];
  const errors = [];
  let saved = offset;
  for (let reads = 1; reads <= 20; reads += 1) {
    const res = await stream({
      url, offset: saved, live, backoffOptions: QUICK_BACKOFF,
    });
    let how;
    try {
      how = await subscribeUntilClosed(res, (batch) => {
        items.push(...batch.items);
        saved = batch.offset;
        onItems(items);
      });
    } catch (e) {
      errors.push(e);
      continue;
    } finally {
      res.cancel();
    }
    if (how === 'closed') return { items, reads, errors, offset: saved };
    errors.push(new Error('the read ended before the stream was closed'));
  }
  throw new Error(`20 reads did not reach the end; errors: ${errors.map((e) => e.message).join('; ')}`);
}

describe('writing and reading', () => {
  test('create, append, read it all, then resume from the returned offset', async () => {
    const url = freshUrl('text');
    const handle = await DurableStream.create({ url, contentType: 'text/plain' });
    expect(handle.contentType).toBe('text/plain');
    await handle.append('hello, ');
    await handle.append('world');

    const first = await stream({ url, live: false });
    expect(await first.text()).toBe('hello, world');
    expect(first.upToDate).toBe(true);
    expect(first.streamClosed).toBe(false);
    const mark = first.offset;
    expect(mark).not.toBe('-1');
    const head = await handle.head();
    expect(head.exists).toBe(true);
    expect(head.offset).toBe(mark);

    await handle.append('!\nline two\n');
    const rest = await stream({ url, offset: mark, live: false });
    expect(await rest.text()).toBe('!\nline two\n');
    expect(rest.offset > mark, `${rest.offset} sorts after ${mark}`).toBe(true);

    const tail = await stream({ url, offset: rest.offset, live: false });
    expect(await tail.text()).toBe('');
    expect(tail.offset).toBe(rest.offset);

    const again = await stream({ url, offset: '-1', live: false });
    expect(await again.text()).toBe('hello, world!\nline two\n');
  }, TEST_MS);

  test('bytes come back exactly, CR and non-UTF-8 included', async () => {
    const url = freshUrl('bytes');
    const handle = await DurableStream.create({ url, contentType: 'application/octet-stream' });
    const parts = [Uint8Array.from([0, 255, 254, 13, 10]), new TextEncoder().encode('\r\nü\r')];
    for (const p of parts) await handle.append(p);
    const res = await stream({ url, live: false });
    expect(Buffer.from(await res.body())).toEqual(Buffer.concat(parts));
  }, TEST_MS);

  test('JSON: messages come back as the values appended, objects and arrays alike', async () => {
    const url = freshUrl('json');
    const handle = await DurableStream.create({ url, contentType: 'application/json' });
    const values = [{ a: 1, nested: { b: [1, 2] } }, [1, 2, 3], 'text with\nnewline', 42, null, { crlf: 'x\r\ny' }];
    for (const v of values) await handle.append(JSON.stringify(v));
    const res = await stream({ url, live: false });
    expect(await res.json()).toEqual(values);

    // Appends that overlap are batched into one POST; each stays a message.
    const batch = [{ n: 1 }, { n: 2 }, { n: 3 }];
    await Promise.all(batch.map((v) => handle.append(JSON.stringify(v))));
    const after = await stream({ url, offset: res.offset, live: false });
    expect(await after.json()).toEqual(batch);
  }, TEST_MS);

  test('a closed stream: readers see the end, appends are refused', async () => {
    const url = freshUrl('close');
    const handle = await DurableStream.create({ url, contentType: 'application/json' });
    await handle.append(JSON.stringify({ n: 1 }));
    const { finalOffset } = await handle.close({ body: JSON.stringify({ n: 2 }) });
    const res = await stream({ url, live: true });
    const seen = [];
    expect(await subscribeUntilClosed(res, (b) => seen.push(...b.items))).toBe('closed');
    expect(seen).toEqual([{ n: 1 }, { n: 2 }]);
    expect(res.offset).toBe(finalOffset);
    expect((await handle.head()).streamClosed).toBe(true);
    // rill answers 409 with Stream-Closed: true and the final offset. This
    // client surfaces that from append() as a FetchError with the answer's
    // headers, not as its StreamClosedError: its retrying fetch throws on
    // the 409 before append() would map it.
    const refused = await handle.append(JSON.stringify({ n: 3 })).then(() => null, (e) => e);
    expect(refused).toBeInstanceOf(FetchError);
    expect(refused.status).toBe(409);
    expect(refused.headers['stream-closed']).toBe('true');
    expect(refused.headers['stream-next-offset']).toBe(finalOffset);
    const stillThere = await stream({ url, live: false });
    expect(await stillThere.json()).toEqual([{ n: 1 }, { n: 2 }]);
  }, TEST_MS);
});

describe.each(['long-poll', 'sse'])('a live tail (%s)', (live) => {
  test('sees appends made after it started, in order, each once', async () => {
    const url = freshUrl(`tail-${live}`);
    const handle = await DurableStream.create({ url, contentType: 'application/json' });
    await handle.append(JSON.stringify({ n: 0 }));
    const { fetch: fetchFn, requests } = recordingFetch();
    const res = await stream({ url, live, fetch: fetchFn });
    const seen = [];
    const arrived = [];
    res.subscribeJson((b) => {
      seen.push(...b.items);
      for (const _ of b.items) arrived.push(Date.now());
    });
    try {
      await until(() => seen.length === 1, 'the message written before the read');
      // The reader is waiting on a live request when the next append lands.
      await until(() => requests.some((r) => r.url.searchParams.get('live') === live), `a ${live} request`);
      await new Promise((r) => setTimeout(r, 200));
      for (let n = 1; n <= 3; n += 1) {
        const sent = Date.now();
        await handle.append(JSON.stringify({ n }));
        await until(() => seen.length === n + 1, `message ${n}`);
        expect(arrived[n] - sent).toBeLessThan((LONG_POLL_SECS * 1000) / 2);
      }
      expect(seen).toEqual([0, 1, 2, 3].map((n) => ({ n })));
      const modes = new Set(requests.map((r) => r.url.searchParams.get('live')));
      expect(modes.has(live)).toBe(true);
      expect(modes.has(live === 'sse' ? 'long-poll' : 'sse')).toBe(false);
    } finally {
      res.cancel();
    }
  }, TEST_MS);

  test('a text stream tails too', async () => {
    const url = freshUrl(`text-${live}`);
    const handle = await DurableStream.create({ url, contentType: 'text/plain' });
    await handle.append('one\n');
    const res = await stream({ url, live });
    let text = '';
    res.subscribeText((chunk) => { text += chunk.text; });
    try {
      await until(() => text === 'one\n', 'the text written before the read');
      await handle.append('two\n three\n');
      await until(() => text.length >= 'one\ntwo\n three\n'.length, 'the appended text');
      expect(text).toBe('one\ntwo\n three\n');
    } finally {
      res.cancel();
    }
  }, TEST_MS);

  test('a cut connection loses and repeats nothing', async () => {
    const proxy = await startProxy(rill.base);
    try {
      const name = freshUrl(`cut-${live}`).split('/v1/stream/')[1];
      const direct = `${rill.base}/v1/stream/${name}`;
      const viaProxy = `${proxy.base}/v1/stream/${name}`;
      const writer = await DurableStream.create({ url: direct, contentType: 'application/json' });
      const total = 60;
      const expected = Array.from({ length: total }, (_, n) => ({ n }));
      for (let n = 0; n < 10; n += 1) await writer.append(JSON.stringify({ n }));

      let received = 0;
      const reading = readUntilClosed(viaProxy, { live, onItems: (items) => { received = items.length; } });
      const cuts = [];
      for (let n = 10; n < total; n += 1) {
        await writer.append(JSON.stringify({ n }));
        if (n === 25 || n === 45) {
          // Mid-stream: the reader is behind the writer by a few messages
          // at most, and the next answer rill sends it is cut in half.
          await until(() => received >= n - 5, `the reader to reach ${n - 5}`);
          cuts.push(within(PATIENCE_MS, proxy.cutMidResponse(), 'the cut'));
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      const cut = await Promise.all(cuts);
      await writer.close();
      const { items, reads, errors } = await reading;
      expect(cut.every((n) => n > 0), `connections cut: ${cut}`).toBe(true);
      expect(items).toEqual(expected);
      // Whether the client recovered by itself or the application resumed from its offset.
      console.log(`${live}: ${reads} read(s) after ${cuts.length} cuts`
        + `${errors.length ? `; ended by: ${errors.map((e) => e.message).join('; ')}` : ''}`);
    } finally {
      await proxy.stop();
    }
  }, TEST_MS);
});

describe('the idempotent producer', () => {
  test('writes every message once, in order, and closes the stream', async () => {
    const url = freshUrl('producer');
    const handle = await DurableStream.create({ url, contentType: 'application/json' });
    const errors = [];
    const producer = new IdempotentProducer(handle, 'writer-1', {
      lingerMs: 2, maxInFlight: 3, maxBatchBytes: 200, onError: (e) => errors.push(e),
    });
    const values = Array.from({ length: 50 }, (_, n) => ({ n, pad: 'x'.repeat(20) }));
    for (const v of values) producer.append(JSON.stringify(v));
    await producer.flush();
    expect(errors).toEqual([]);
    expect(producer.nextSeq).toBeGreaterThan(1); // several batches, pipelined
    const { finalOffset } = await producer.close(JSON.stringify({ end: true }));
    const res = await stream({ url, live: false });
    expect(await res.json()).toEqual([...values, { end: true }]);
    expect(res.offset).toBe(finalOffset);
    expect(res.streamClosed).toBe(true);
  }, TEST_MS);

  test('a resent batch (same id, epoch and sequence) is not written twice', async () => {
    const url = freshUrl('dedup');
    const handle = await DurableStream.create({ url, contentType: 'application/json' });
    const batch = [{ n: 1 }, { n: 2 }];
    const send = async () => {
      // A producer restarted without its state resends sequence 0 of epoch 0,
      // as a retry after a lost answer would.
      const errors = [];
      const p = new IdempotentProducer(handle, 'writer-1', { epoch: 0, onError: (e) => errors.push(e) });
      for (const v of batch) p.append(JSON.stringify(v));
      await p.flush();
      await p.detach();
      return errors;
    };
    expect(await send()).toEqual([]);
    expect(await send()).toEqual([]);
    const res = await stream({ url, live: false });
    expect(await res.json()).toEqual(batch);
  }, TEST_MS);

  test('a newer epoch fences the old producer', async () => {
    const url = freshUrl('fence');
    const handle = await DurableStream.create({ url, contentType: 'application/json' });
    const oldErrors = [];
    const old = new IdempotentProducer(handle, 'writer-1', { epoch: 0, onError: (e) => oldErrors.push(e) });
    old.append(JSON.stringify('from epoch 0'));
    await old.flush();
    const fresh = new IdempotentProducer(handle, 'writer-1', { epoch: 1 });
    fresh.append(JSON.stringify('from epoch 1'));
    await fresh.flush();
    old.append(JSON.stringify('zombie'));
    // The refusal reaches onError; whether flush() rejects too is the client's business.
    await old.flush().catch(() => {});
    expect(oldErrors.length).toBe(1);
    expect(oldErrors[0]).toBeInstanceOf(StaleEpochError);
    expect(oldErrors[0].currentEpoch).toBe(1);
    const res = await stream({ url, live: false });
    expect(await res.json()).toEqual(['from epoch 0', 'from epoch 1']);
    await fresh.detach();
    await old.detach().catch(() => {});
  }, TEST_MS);
});

describe('a generation read as a protocol stream', () => {
  // The mock model replays this recording for prompts about the planets.
  const recording = readFileSync(path.join(ROOT, 'data', 'llama3.1-planets.ndjson'), 'utf8')
    .split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
  const answer = recording.map((l) => l.response).join('');

  async function startGeneration() {
    const res = await fetch(`${rill.base}/v1/generations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Tell me about the planets' }),
    });
    expect(res.status).toBe(201);
    const { id, stream: streamPath } = await res.json();
    expect(streamPath).toBe(`/v1/streams/gen-${id}`);
    return id;
  }

  /** Checks one read of a whole generation: its messages, text and end. */
  function checkEvents(id, items) {
    expect(items.length).toBeGreaterThan(2);
    items.forEach((m, i) => {
      expect(Object.keys(m).sort()).toEqual(['data', 'event', 'id']);
      expect(m.id).toBe(`${id}.${i + 1}`);
    });
    const text = items.filter((m) => m.event === 'message').map((m) => m.data).join('');
    expect(text).toBe(answer);
    const last = items.at(-1);
    expect(last.event).toBe('done');
    expect(last.data.finish_reason).toBe('stop');
    expect(last.data.tokens).toBe(items.filter((m) => m.event === 'message').length);
    expect(items.filter((m) => m.event === 'done' || m.event === 'failed')).toHaveLength(1);
  }

  test.each(['sse', 'long-poll'])('live (%s) from offset -1 until the terminal event closes it', async (live) => {
    const id = await startGeneration();
    const url = `${rill.base}/v1/stream/gen-${id}`;
    const { items, reads } = await readUntilClosed(url, { live });
    expect(reads).toBe(1);
    checkEvents(id, items);
    const head = await DurableStream.head({ url });
    expect(head.exists).toBe(true);
    expect(head.contentType).toBe('application/json');
    expect(head.streamClosed).toBe(true);
    // A catch-up read afterwards gives the same messages.
    const again = await stream({ url, live: false });
    expect(await again.json()).toEqual(items);
    expect(again.streamClosed).toBe(true);
  }, TEST_MS);
});
