// Runs the official Durable Streams conformance suite against a fresh rill:
//
//   node conformance.mjs memory    # the memory store
//   node conformance.mjs redis     # the Redis at $RILL_TEST_REDIS_URL
//
// It starts rill (target/debug/rill or $RILL_BIN) on a loopback port with a
// long-poll shorter than the suite's 5 s test timeout and CORS open (the
// suite checks a preflight), runs vitest on conformance.test.mjs with
// RILL_DS_URL set, stops rill and exits with vitest's status. On Redis the
// keys live under a prefix of their own, deleted afterwards. The whole run
// is bounded by $RILL_DS_CONFORMANCE_SECS (default 600).
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startRill } from '../js/support.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const LIMIT_MS = Number(process.env.RILL_DS_CONFORMANCE_SECS || 600) * 1000;

const store = process.argv[2];
if (store !== 'memory' && store !== 'redis') {
  console.error('usage: node conformance.mjs memory|redis');
  process.exit(2);
}
const args = ['--long-poll-secs', '2', '--cors-origin', '*'];
let redis = null;
if (store === 'redis') {
  const url = process.env.RILL_TEST_REDIS_URL;
  if (!url) {
    console.error('conformance.mjs redis: set RILL_TEST_REDIS_URL (redis://HOST:PORT/DB)');
    process.exit(2);
  }
  redis = { url, prefix: `rill-ds-conformance:${process.pid}:${Date.now().toString(36)}:` };
  args.push('--store', url, '--redis-prefix', redis.prefix);
}

let rill = null;
let vitest = null;
let stopping = null;

/** Stops vitest and rill, cleans Redis; once. */
function stopAll() {
  stopping ??= (async () => {
    if (vitest && vitest.exitCode === null && vitest.signalCode === null) vitest.kill('SIGKILL');
    await rill?.stop();
    if (redis) {
      try {
        const n = await deleteKeys(redis.url, redis.prefix);
        console.log(`deleted ${n} Redis keys under ${redis.prefix}`);
      } catch (e) {
        console.error(`could not delete the Redis keys under ${redis.prefix}: ${e.message}`);
      }
    }
  })();
  return stopping;
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => stopAll().finally(() => process.exit(1)));
}

let status = 1;
try {
  rill = await startRill(args);
  console.log(`rill (${store} store) at ${rill.base}`);
  status = await runVitest(rill.base);
} catch (e) {
  console.error(e.message);
} finally {
  if (status !== 0 && rill) {
    console.error(`rill's log, last lines:\n${rill.log.slice(-40).join('\n')}`);
  }
  await stopAll();
}
process.exit(status);

/** vitest on conformance.test.mjs against `base`; its exit status. */
function runVitest(base) {
  const bin = path.join(HERE, 'node_modules', 'vitest', 'vitest.mjs');
  vitest = spawn(process.execPath, [bin, 'run', '--reporter=dot', 'conformance.test.mjs'], {
    cwd: HERE,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, RILL_DS_URL: base, NO_COLOR: '1', FORCE_COLOR: '0' },
  });
  let summary = null;
  readline.createInterface({ input: vitest.stdout }).on('line', (line) => {
    console.log(line);
    if (/^\s*Tests\s+\d/.test(line)) summary = line.trim();
  });
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      console.error(`the suite did not finish within ${LIMIT_MS / 1000} s`);
      vitest.kill('SIGKILL');
    }, LIMIT_MS);
    vitest.once('error', (e) => { console.error(`cannot run vitest: ${e.message}`); });
    vitest.once('close', (code, signal) => {
      clearTimeout(timer);
      console.log(`Durable Streams conformance, ${store} store: ${summary ?? 'no summary'}`
        + ` (vitest ${signal ? `killed by ${signal}` : `exit ${code}`})`);
      resolve(code ?? 1);
    });
  });
}

/**
 * Deletes the keys under `prefix` in the Redis at `url` (redis://[USER:PASS@]HOST:PORT/DB),
 * with SCAN and DEL over one connection; the number deleted.
 */
async function deleteKeys(url, prefix) {
  const u = new URL(url);
  if (u.protocol !== 'redis:') throw new Error(`not a redis:// URL: ${u.protocol}`);
  const conn = net.createConnection({ host: u.hostname || '127.0.0.1', port: Number(u.port || 6379) });
  conn.setTimeout(5000, () => conn.destroy(new Error('Redis did not answer within 5 s')));
  const replies = respReplies(conn);
  const call = async (...words) => {
    conn.write(`*${words.length}\r\n${words.map((w) => `$${Buffer.byteLength(w)}\r\n${w}\r\n`).join('')}`);
    const { value, done } = await replies.next();
    if (done) throw new Error('Redis closed the connection');
    if (value instanceof Error) throw value;
    return value;
  };
  try {
    if (u.password) {
      await call('AUTH', ...(u.username ? [decodeURIComponent(u.username)] : []), decodeURIComponent(u.password));
    }
    const db = u.pathname.replace(/^\//, '');
    if (db) await call('SELECT', db);
    let cursor = '0';
    let deleted = 0;
    do {
      const [next, keys] = await call('SCAN', cursor, 'MATCH', `${prefix}*`, 'COUNT', '1000');
      cursor = next;
      if (keys.length) deleted += await call('DEL', ...keys);
    } while (cursor !== '0');
    return deleted;
  } finally {
    conn.destroy();
  }
}

/** The RESP2 replies read from `conn`, one at a time (errors as Error values). */
async function* respReplies(conn) {
  let buf = Buffer.alloc(0);
  const chunks = conn[Symbol.asyncIterator]();
  const more = async () => {
    const { value, done } = await chunks.next();
    if (done) throw new Error('Redis closed the connection');
    buf = Buffer.concat([buf, value]);
  };
  const line = async () => {
    let end;
    while ((end = buf.indexOf('\r\n')) < 0) await more();
    const text = buf.subarray(0, end).toString();
    buf = buf.subarray(end + 2);
    return text;
  };
  const reply = async () => {
    const head = await line();
    const rest = head.slice(1);
    switch (head[0]) {
      case '+': return rest;
      case '-': return new Error(`Redis: ${rest}`);
      case ':': return Number(rest);
      case '$': {
        const n = Number(rest);
        if (n < 0) return null;
        while (buf.length < n + 2) await more();
        const s = buf.subarray(0, n).toString();
        buf = buf.subarray(n + 2);
        return s;
      }
      case '*': {
        const n = Number(rest);
        const items = [];
        for (let i = 0; i < n; i += 1) items.push(await reply());
        return n < 0 ? null : items;
      }
      default: throw new Error(`unexpected Redis reply: ${head}`);
    }
  };
  for (;;) yield await reply();
}
