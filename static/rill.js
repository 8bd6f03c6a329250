// rill.js: the browser side of rill, one dependency-free ES module.
//
//   import { generate } from '/rill.js';
//   const answer = await generate({ prompt: 'Hi' }, { text: (t) => { out.textContent += t; } });
//
// What it does, and why it is here rather than in every app (docs/client.md):
// - Follows a stream with typed callbacks (text, reasoning, tool calls,
//   usage, done, failed, reset, end), on the browser's own EventSource: the
//   browser parses the wire, this module never reparses it.
// - Tells a lost connection (retried, by the browser or by this module)
//   from a final answer (`done`, `failed`, `end`, `204`, a refusal).
// - Keeps what it handled per stream in sessionStorage, with the id of the
//   last event, so a reload shows the answer once and resumes after it.
// - Shares one connection per stream among the tabs of an origin: the tab
//   holding a Web Lock opens the EventSource and relays every event over a
//   BroadcastChannel; when it goes, the next tab in the lock's queue takes
//   over from its own last id. Without those APIs, one connection per tab.
// - Starts and cancels generations, with the token where rill reads it:
//   `Authorization` for fetch, the cookie or a short-lived ticket
//   (`?access_token=`) for the EventSource, which cannot send headers.

const KNOWN = ['message', 'reasoning', 'tool_call', 'usage', 'done', 'failed', 'reset', 'end'];
const TERMINAL = ['done', 'failed', 'end'];
/** Characters of event data a stream keeps for catch-up and reloads. */
const KEEP_CHARS = 1 << 20;
/** Fewest milliseconds between two saves to sessionStorage. */
const SAVE_MS = 250;
/** A follower that hears no catch-up in this long asks again. */
const HELLO_MS = 2000;
/** Bounds of this module's own reconnect delay (after a 5xx, say). */
const BACKOFF_MS = [1000, 30000];

/** An HTTP answer rill.js could not use: `status` and rill's JSON `body`. */
export class RillError extends Error {
  constructor(message, status, body) {
    super(message);
    this.name = 'RillError';
    this.status = status;
    this.body = body;
  }
}

/** A client bound to one server (`base`) and its credentials. */
export function client(options = {}) {
  const o = { base: '', share: true, keep: 'events', ...options };
  const generation = (id, handlers, more) => {
    const f = new Follow(resolve(o.base, `gen-${id}`), handlers, { ...o, from: '0', ...more });
    f.id = id;
    f.cancel = () => cancelGeneration({ ...o, ...more }, id);
    return f;
  };
  return {
    follow: (stream, handlers, more) => new Follow(resolve(o.base, stream), handlers, { ...o, ...more }),
    generation,
    start: (request, more) => startGeneration({ ...o, ...more }, request),
    cancel: (id, more) => cancelGeneration({ ...o, ...more }, id),
    async generate(request, handlers, more) {
      const started = await startGeneration({ ...o, ...more }, request);
      return generation(started.id, handlers, more);
    },
    forget: (stream) => drop(resolve(o.base, stream)),
  };
}

const local = client();
/** Follows a stream (a name, or a path such as `/sse`) on this origin. */
export function follow(stream, handlers, options) { return local.follow(stream, handlers, options); }
/** Follows generation `id`'s answer from its first event, with `cancel()`. */
export function generation(id, handlers, options) { return local.generation(id, handlers, options); }
/** Starts a generation and follows it. */
export function generate(request, handlers, options) { return local.generate(request, handlers, options); }
/** `POST /v1/generations`: `{id, stream, replay}`. */
export function start(request, options) { return local.start(request, options); }
/** Stops generation `id`: `{cancelled: true}`, or `false` if it was not running. */
export function cancel(id, options) { return local.cancel(id, options); }
/** Drops what this tab kept of a stream, so following it starts afresh. */
export function forget(stream) { return local.forget(stream); }

// ---- HTTP ----

const value = async (v) => (typeof v === 'function' ? v() : v);
const credentials = (o) => (o.withCredentials ? 'include' : 'same-origin');
const json = (text) => { try { return JSON.parse(text); } catch { return null; } };

function resolve(base, stream) {
  const origin = base || location.href;
  const url = /^\/|^https?:/.test(stream)
    ? new URL(stream, origin)
    : new URL(`/v1/streams/${encodeURIComponent(stream)}`, origin);
  url.searchParams.delete('lastEventId');
  url.searchParams.delete('access_token');
  return url.href;
}

async function post(o, path, body) {
  const headers = { 'content-type': 'application/json', accept: 'application/json' };
  const token = await value(o.token);
  if (token) headers.authorization = `Bearer ${token}`;
  if (o.idempotencyKey) headers['idempotency-key'] = o.idempotencyKey;
  const res = await fetch(new URL(path, o.base || location.href), {
    method: 'POST', headers, body: JSON.stringify(body), credentials: credentials(o),
  });
  return { res, body: json(await res.text()) || {} };
}

async function startGeneration(o, request) {
  const { res, body } = await post(o, '/v1/generations', request);
  if (!res.ok || typeof body.id !== 'string' || typeof body.stream !== 'string') {
    throw new RillError(body.message || `could not start (HTTP ${res.status})`, res.status, body);
  }
  return body;
}

async function cancelGeneration(o, id) {
  const { res, body } = await post(o, `/v1/generations/${encodeURIComponent(id)}/cancel`, {});
  if (res.status === 404) return { cancelled: false, status: 404 };
  if (!res.ok) throw new RillError(body.message || `could not cancel (HTTP ${res.status})`, res.status, body);
  return { cancelled: true, status: res.status };
}

// ---- what a tab keeps ----

function drop(url) {
  try { sessionStorage.removeItem(`rill:${url}`); } catch { /* storage off */ }
}

/** The events of one stream since `base` (the id they follow), bounded. */
class Log {
  constructor(base) {
    this.base = base;
    this.events = [];
    this.chars = 0;
    this.truncated = false;
  }

  push(ev) {
    if (ev.type === 'reset') {
      // What came before is stale: a reset starts the stream over.
      this.events = [];
      this.chars = 0;
      this.base = null;
    }
    this.events.push(ev);
    this.chars += ev.data.length;
    while (this.chars > KEEP_CHARS && this.events.length > 1) {
      const old = this.events.shift();
      this.chars -= old.data.length;
      this.base = old.id;
      this.truncated = true;
    }
  }

  /** The events after `id`, or null when this log cannot say. */
  after(id) {
    if (id === undefined) return [];
    for (let i = this.events.length - 1; i >= 0; i--) {
      if (this.events[i].id === id) return this.events.slice(i + 1);
    }
    if (id === this.base || this.events[0]?.type === 'reset') return this.events.slice();
    return null;
  }
}

// ---- following one stream ----

const call = (fn, ...args) => {
  if (typeof fn !== 'function') return;
  try { fn(...args); } catch (e) { (globalThis.reportError || console.error)(e); }
};

class Follow {
  constructor(url, handlers, o) {
    this.url = url;
    this.key = `rill:${url}`;
    this.h = handlers || {};
    this.o = o;
    this.state = 'connecting';
    this.outcome = null;
    this.holder = false;
    this.source = null;
    this.last = o.from;
    this.log = new Log(o.from);
    this.backoff = BACKOFF_MS[0];
    this.finished = new Promise((r) => { this.settle = r; });
    // Leaving the page: keep what was handled. The browser then drops the
    // connection, which is no refusal to look into.
    this.onHide = () => { this.unloading = true; this.save(); };
    // After the caller has its handle: restored events reach the handlers.
    queueMicrotask(() => {
      this.restore();
      if (this.outcome) return;
      addEventListener('pagehide', this.onHide);
      const shared = o.share !== false && globalThis.navigator?.locks && typeof BroadcastChannel === 'function';
      if (shared) this.join(); else this.open();
    });
  }

  /** Stops following (another tab takes over the connection, if any). */
  close() { this.finish({ kind: 'closed' }); }

  /** Every event passes here once: from the wire, a relay, a catch-up, storage. */
  take(ev) {
    if (this.outcome) return;
    this.log.push(ev);
    if (ev.id) this.last = ev.id;
    if (!ev.restored) this.saveSoon();
    this.dispatch(ev);
    if (TERMINAL.includes(ev.type)) this.finish({ kind: ev.type, data: json(ev.data), id: ev.id });
  }

  dispatch(ev) {
    const h = this.h;
    const v = ev.type === 'message' ? null : json(ev.data);
    switch (ev.type) {
      case 'message': return call(h.text, ev.data, ev);
      case 'reasoning': return call(h.reasoning, typeof v?.text === 'string' ? v.text : ev.data, ev);
      case 'tool_call': return call(h.toolCall, v ?? { arguments: ev.data }, ev);
      case 'usage': return call(h.usage, v, ev);
      case 'done': return call(h.done, v ?? {}, ev);
      case 'failed': return call(h.failed, v ?? { message: ev.data }, ev);
      case 'reset': return call(h.reset, v ?? {}, ev);
      case 'end': return call(h.end, v ?? {}, ev);
      default: return call(h.event, ev);
    }
  }

  setState(s) {
    if (s === this.state || this.outcome) return;
    this.state = s;
    if (s === 'open') {
      this.backoff = BACKOFF_MS[0];
      this.tickets = 0;
    }
    call(this.h.status, s);
    if (this.holder) this.relay({ t: 'state', s });
  }

  finish(outcome) {
    if (this.outcome) return;
    this.outcome = outcome;
    this.state = 'closed';
    clearTimeout(this.retryTimer);
    clearTimeout(this.helloTimer);
    this.source?.close();
    this.save();
    this.leave();
    removeEventListener('pagehide', this.onHide);
    call(this.h.status, 'closed');
    call(this.h.close, outcome);
    this.settle(outcome);
  }

  // -- the connection, when this tab holds it --

  async target() {
    const url = new URL(this.url);
    if (this.last !== undefined) url.searchParams.set('lastEventId', this.last);
    const ticket = await value(this.o.ticket);
    if (ticket) url.searchParams.set('access_token', ticket);
    return url;
  }

  async open() {
    const url = await this.target();
    if (this.outcome) return;
    const es = new EventSource(url, { withCredentials: !!this.o.withCredentials });
    this.source = es;
    es.onopen = () => this.setState('open');
    for (const type of [...KNOWN, ...(this.o.types || [])]) {
      es.addEventListener(type, (e) => {
        if (es !== this.source || this.outcome) return;
        const ev = { id: e.lastEventId, type, data: e.data };
        this.relay({ t: 'ev', prev: this.last, ev });
        this.take(ev);
      });
    }
    es.onerror = () => {
      if (es !== this.source || this.outcome || this.unloading) return;
      // CONNECTING: the browser retries by itself, with Last-Event-ID.
      if (es.readyState !== EventSource.CLOSED) return this.setState('reconnecting');
      this.refused();
    };
  }

  /** The EventSource gave up: ask the server why, since the browser won't say. */
  async refused() {
    const { status, stream } = await this.statusNow();
    if (this.outcome) return;
    if (status === 204) return this.finish({ kind: 'complete', status });
    const again = status === 0 || status >= 500 || status === 408 || status === 429
      || (status === 200 && stream) || (status === 401 && this.o.ticket && (this.tickets = (this.tickets || 0) + 1) <= 3);
    if (!again) return this.finish({ kind: 'refused', status });
    this.setState('reconnecting');
    this.retryTimer = setTimeout(() => this.open(), this.backoff);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MS[1]);
  }

  async statusNow() {
    const ctl = new AbortController();
    try {
      const res = await fetch(await this.target(), {
        headers: { accept: 'text/event-stream' }, credentials: credentials(this.o), signal: ctl.signal, cache: 'no-store',
      });
      const stream = (res.headers.get('content-type') || '').startsWith('text/event-stream');
      ctl.abort();
      return { status: res.status, stream };
    } catch {
      return { status: 0, stream: false };
    }
  }

  // -- sharing the connection among tabs --

  join() {
    this.tab = Math.random().toString(36).slice(2);
    this.channel = new BroadcastChannel(this.key);
    this.channel.onmessage = (m) => this.heard(m.data);
    this.queued = new AbortController();
    navigator.locks.request(this.key, { signal: this.queued.signal }, () => {
      this.queued = null;
      if (this.outcome || !this.channel) return undefined;
      return new Promise((release) => { this.release = release; this.lead(); });
    }).catch(() => { /* aborted: finished or gone solo while queued */ });
    this.hello();
  }

  lead() {
    this.holder = true;
    this.waiting = false;
    clearTimeout(this.helloTimer);
    this.relay({ t: 'holder' });
    this.open();
  }

  relay(msg) {
    if (this.holder && this.channel) this.channel.postMessage({ ...msg, from: this.tab });
  }

  hello() {
    this.waiting = true;
    this.channel?.postMessage({ t: 'hello', from: this.tab, after: this.last });
    clearTimeout(this.helloTimer);
    this.helloTimer = setTimeout(() => { if (this.waiting && !this.holder) this.hello(); }, HELLO_MS);
  }

  heard(m) {
    if (this.outcome) return;
    if (this.holder) {
      if (m.t === 'hello') this.catchUp(m);
      return;
    }
    if (m.t === 'holder') this.hello();
    else if (m.t === 'state') this.setState(m.s);
    else if (m.t === 'catchup' && m.to === this.tab) this.caughtUp(m);
    else if (m.t === 'ev' && !this.waiting) {
      if (this.last === undefined || m.prev === this.last) this.take(m.ev);
      else if (m.ev.id !== this.last) this.hello(); // out of step: ask for what is missing
    }
  }

  /** The holder answers a tab that asks for the events after `m.after`. */
  catchUp(m) {
    const events = this.log.after(m.after);
    this.channel.postMessage(events
      ? { t: 'catchup', to: m.from, events, s: this.state }
      : { t: 'catchup', to: m.from, solo: true });
  }

  caughtUp(m) {
    this.waiting = false;
    clearTimeout(this.helloTimer);
    if (m.solo) {
      // The holder no longer has where this tab is: read it directly.
      this.leave();
      this.open();
      return;
    }
    for (const ev of m.events) this.take(ev);
    this.setState(m.s);
  }

  leave() {
    this.queued?.abort();
    this.queued = null;
    this.release?.();
    this.release = null;
    this.holder = false;
    this.channel?.close();
    this.channel = null;
  }

  // -- across reloads --

  restore() {
    if (this.o.keep === false) return;
    let saved = null;
    try { saved = json(sessionStorage.getItem(this.key)); } catch { return; }
    if (saved?.v !== 1) return;
    if (this.o.keep === 'id') {
      if (typeof saved.last === 'string') this.last = this.log.base = saved.last;
      return;
    }
    if (!Array.isArray(saved.events)) return;
    this.log = new Log(saved.base ?? undefined);
    this.last = this.log.base;
    for (const [id, type, data] of saved.events) this.take({ id, type, data, restored: true });
  }

  saveSoon() {
    if (this.o.keep === false || this.saveTimer) return;
    this.saveTimer = setTimeout(() => this.save(), SAVE_MS);
  }

  /** Stores the log and its last id together, or nothing: never one without the other. */
  save() {
    clearTimeout(this.saveTimer);
    this.saveTimer = null;
    if (this.o.keep === false || this.last === undefined) return;
    try {
      if (this.log.truncated) return drop(this.url);
      const saved = this.o.keep === 'id'
        ? { v: 1, last: this.last }
        : { v: 1, base: this.log.base ?? null, events: this.log.events.map((e) => [e.id, e.type, e.data]) };
      sessionStorage.setItem(this.key, JSON.stringify(saved));
    } catch {
      drop(this.url);
    }
  }
}
