// What every SDK test needs: the real rill binary on a loopback port, fake
// model servers that replay recorded streams in their real wire formats,
// and a JWT signer for tests with auth on. Node's standard library only.
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DATA = path.join(ROOT, 'tests', 'data');
/** How long a test waits for something that should happen. */
export const PATIENCE_MS = 30_000;

const WEATHER = {
  type: 'object', properties: { city: { type: 'string' } }, required: ['city'],
};
/** The same tool in Chat Completions' and the Responses API's forms. */
export const CHAT_TOOLS = [{ type: 'function', function: { name: 'get_weather', parameters: WEATHER } }];
export const RESPONSE_TOOLS = [{ type: 'function', name: 'get_weather', parameters: WEATHER, strict: false }];

/** `rill serve` on 127.0.0.1 port 0 with `args` ($RILL_BIN or target/debug/rill). */
export async function startRill(args = []) {
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
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.once('error', (e) => { clearTimeout(timer); fail(`cannot run ${bin}: ${e.message}`); });
    child.once('exit', (code) => { clearTimeout(timer); fail(`rill exited (${code}) before listening`); });
  });
  return {
    base,
    baseURL: `${base}/v1`,
    log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * A model server on 127.0.0.1 port 0 answering every POST with `pieces`,
 * `delayMs` apart; keeps the JSON bodies it was sent.
 */
export async function fakeModel(contentType, pieces, delayMs = 5) {
  const requests = [];
  const server = http.createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    requests.push({ path: req.url, body: body ? JSON.parse(body) : null });
    res.writeHead(200, { 'content-type': contentType });
    for (const piece of pieces) {
      await new Promise((r) => setTimeout(r, delayMs));
      if (res.destroyed) return;
      res.write(piece);
    }
    res.end();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    requests,
    stop: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

/** Ollama's /api/chat: thinking, then text, then two whole tool calls. */
export function fakeOllama() {
  const text = readFileSync(path.join(DATA, 'ollama-chat-tools.ndjson'));
  const lines = text.toString('utf8').split(/(?<=\n)/).map((l) => Buffer.from(l));
  return fakeModel('application/x-ndjson', lines);
}

/** An OpenAI-compatible server: reasoning_content, text, interleaved tool-call fragments. */
export function fakeOpenAi() {
  const text = readFileSync(path.join(DATA, 'openai-chat-tools.sse')).toString('utf8');
  const events = text.split('\n\n').filter((e) => e).map((e) => Buffer.from(`${e}\n\n`));
  return fakeModel('text/event-stream', events);
}

/** An HS256 JWT of `claims`, valid for an hour. */
export function jwt(secret, claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims });
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}
