// What every browser test needs: the real rill binary on a loopback port,
// headless Chromium, the answers the mock model gives, and a TCP proxy that
// can cut connections mid-stream.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const readline = require('node:readline');
const { chromium } = require('playwright-core');

const ROOT = path.resolve(__dirname, '..', '..');

/** How long a test waits for something that should happen (never a speed limit). */
const PATIENCE_MS = 30_000;

/**
 * Starts `rill serve` on 127.0.0.1 port 0 with extra `args`; resolves once it
 * logs "listening on http://...". The binary is $RILL_BIN or target/debug/rill.
 */
async function startRill(args = []) {
  const bin = process.env.RILL_BIN || path.join(ROOT, 'target', 'debug', 'rill');
  const child = spawn(bin, ['serve', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, RILL_LOG: 'info', NO_COLOR: '1' },
  });
  const log = [];
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const base = await new Promise((resolve, reject) => {
    const fail = (why) => reject(new Error(`${why}\n${log.join('\n')}`));
    const timer = setTimeout(() => fail(`rill did not listen within ${PATIENCE_MS} ms`), PATIENCE_MS);
    readline.createInterface({ input: child.stderr }).on('line', (line) => {
      log.push(line);
      const m = line.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('error', (e) => { clearTimeout(timer); fail(`cannot run ${bin}: ${e.message}`); });
    child.once('exit', (code) => { clearTimeout(timer); fail(`rill exited (${code}) before listening`); });
  });
  return {
    base,
    log,
    /** SIGTERM, then SIGKILL if it has not exited in 10 s. */
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Headless Debian Chromium ($CHROMIUM or /usr/bin/chromium), via playwright-core. */
function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

/** The seed's recorded answer: every `response` of the NDJSON recording, in order. */
function seedAnswer() {
  return fs
    .readFileSync(path.join(ROOT, 'data', 'llama3.1-planets.ndjson'), 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line).response)
    .join('');
}

/** The mock model's documented answer to a prompt it does not know. */
function mockAnswer(prompt) {
  return `You asked: "${prompt.trim()}". This is rill's mock model. It answers every prompt it does not know with this text, word by word, so the page can be tried without a model server.`;
}

/** Waits until the status element `selector` reads `state` (or fails with what it reads). */
async function waitForState(page, selector, state, timeout = PATIENCE_MS) {
  try {
    await page.waitForFunction(
      ([sel, want]) => document.querySelector(sel)?.dataset.state === want,
      [selector, state],
      { timeout },
    );
  } catch (e) {
    const now = await page.locator(selector).textContent().catch(() => '?');
    throw new Error(`${selector} never became "${state}" (it reads "${now}"): ${e.message}`);
  }
}

/** Waits until the element `selector` holds at least `n` characters. */
function waitForText(page, selector, n, timeout = PATIENCE_MS) {
  return page.waitForFunction(
    ([sel, min]) => (document.querySelector(sel)?.textContent.length ?? 0) >= min,
    [selector, n],
    { timeout },
  );
}

/**
 * A loopback TCP proxy in front of `base` that records both directions, can
 * cut every open connection at once, as a flaky network would, can hold
 * new connections back until released, and can rewrite what the browser
 * sends on new connections.
 */
async function startProxy(base) {
  const target = new URL(base);
  const sockets = new Set();
  let sent = '';
  let received = '';
  let held = null;
  let rewrite = null;
  const track = (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
  };
  const server = net.createServer((client) => {
    track(client);
    const forward = () => {
      const upstream = net.connect(Number(target.port), target.hostname);
      track(upstream);
      const edit = rewrite;
      client.on('data', (chunk) => {
        let text = chunk.toString('latin1');
        if (edit) text = edit(text);
        sent += text;
        upstream.write(Buffer.from(text, 'latin1'));
      });
      upstream.on('data', (chunk) => { received += chunk.toString('utf8'); });
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    };
    if (held) {
      client.pause();
      held.push(forward);
    } else {
      forward();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    /** Every request head the browser sent, in order. */
    requests() {
      const heads = sent.match(/(?:GET|POST|PUT|DELETE|HEAD|OPTIONS) \/\S* HTTP\/1\.[01]\r\n(?:[^\r\n]+\r\n)*/g);
      return (heads || []).map((h) => h.trim());
    },
    /** Everything the server sent back (chunked framing included). */
    received() {
      return received;
    },
    /** Destroys every open connection, both sides. */
    cut() {
      for (const s of sockets) s.destroy();
    },
    /** What the browser sends on new connections passes through `fn`. */
    rewrite(fn) {
      rewrite = fn;
    },
    /** New connections wait, unanswered, until `release()`. */
    hold() {
      held = held || [];
    },
    release() {
      const waiting = held || [];
      held = null;
      for (const forward of waiting) forward();
    },
    async stop() {
      this.release();
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

module.exports = {
  PATIENCE_MS,
  launchBrowser,
  mockAnswer,
  seedAnswer,
  startProxy,
  startRill,
  waitForState,
  waitForText,
};
