// Type declarations of rill.js, the browser client served at /rill.js.
// See docs/client.md for what each call does.

/** One event as the browser's EventSource delivered it. */
export interface RillEvent {
  /** The event's id (`<incarnation>.<n>`); opaque. */
  id: string;
  /** The event type: `message`, `reasoning`, `tool_call`, `usage`, `done`, ... */
  type: string;
  /** The data, as the browser joined its `data:` lines. */
  data: string;
  /** True when it comes from this tab's sessionStorage after a reload. */
  restored?: boolean;
}

/** A model's call of a tool, whole. */
export interface ToolCall {
  id?: string;
  name?: string;
  /** The arguments as the model wrote them (usually JSON text). */
  arguments?: string;
  [field: string]: unknown;
}

/** `event: done` of a generation. */
export interface Done {
  model?: string;
  done_reason?: string;
  finish_reason?: string;
  tokens?: number;
  prompt_tokens?: number | null;
  completion_tokens?: number | null;
  time_to_first_token_ms?: number | null;
  duration_ms?: number;
  cancelled_by?: 'request' | 'no_listeners' | 'shutdown';
  [field: string]: unknown;
}

/** `event: failed`: the generation failed, for good. */
export interface Failed {
  error?: string;
  message?: string;
  upstream_status?: number | null;
  [field: string]: unknown;
}

/** `event: reset`: what is shown is stale; what follows starts over. */
export interface Reset {
  reason?: 'expired' | 'unknown' | 'lagged' | string;
  requested?: string | null;
  missed?: number | null;
  resume_from?: string;
}

/** Where a connection stands. */
export type FollowState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Why following stopped, once. */
export type Outcome =
  | { kind: 'done'; data: Done | null; id: string }
  | { kind: 'failed'; data: Failed | null; id: string }
  | { kind: 'end'; data: unknown; id: string }
  /** `204`: the stream has ended and everything up to its end was read. */
  | { kind: 'complete'; status: 204 }
  /** The server refused the stream (`401`, `403`, `404`, not an event stream, ...). */
  | { kind: 'refused'; status: number }
  /** `close()` was called. */
  | { kind: 'closed' };

/** Callbacks; each is optional. Every one gets the raw event last. */
export interface Handlers {
  text?(delta: string, ev: RillEvent): void;
  reasoning?(delta: string, ev: RillEvent): void;
  toolCall?(call: ToolCall, ev: RillEvent): void;
  usage?(usage: unknown, ev: RillEvent): void;
  done?(summary: Done, ev: RillEvent): void;
  failed?(error: Failed, ev: RillEvent): void;
  /** Clear what you show: a fresh copy follows. */
  reset?(info: Reset, ev: RillEvent): void;
  /** The stream was deleted. */
  end?(info: unknown, ev: RillEvent): void;
  /** Any other type listed in `options.types`. */
  event?(ev: RillEvent): void;
  status?(state: FollowState): void;
  close?(outcome: Outcome): void;
}

export interface Options {
  /** The server, e.g. `https://rill.example`; this page's origin by default. */
  base?: string;
  /** Sent as `Authorization: Bearer` on fetches (start, cancel). */
  token?: string | (() => string | Promise<string>);
  /** A short-lived token for the EventSource (`?access_token=`); asked for at every (re)connect. */
  ticket?: string | (() => string | Promise<string>);
  /** Send cookies cross-origin (EventSource `withCredentials`, fetch `credentials: 'include'`). */
  withCredentials?: boolean;
  /** Share one connection per stream among this origin's tabs (default true). */
  share?: boolean;
  /** What a tab keeps for reloads: `'events'` (default), `'id'` (the last id only), or `false`. */
  keep?: 'events' | 'id' | false;
  /** Where to start when nothing is kept: `'0'` everything retained, an id, or live (undefined). */
  from?: string;
  /** More event types to listen for, delivered to `handlers.event`. */
  types?: string[];
  /** Sent as `Idempotency-Key` when starting a generation. */
  idempotencyKey?: string;
}

/** A stream being followed. */
export interface Follow {
  readonly url: string;
  readonly state: FollowState;
  /** The id of the last event handled (or the starting position). */
  readonly last: string | undefined;
  /** Whether this tab holds the shared connection. */
  readonly holder: boolean;
  /** The EventSource this tab opened last, if it ever held the connection. */
  readonly source: EventSource | null;
  readonly outcome: Outcome | null;
  /** Resolves once, when following stops. */
  readonly finished: Promise<Outcome>;
  close(): void;
}

/** A generation's answer being followed. */
export interface GenerationFollow extends Follow {
  readonly id: string;
  cancel(): Promise<Cancelled>;
}

export interface Started {
  id: string;
  stream: string;
  replay: string;
}

export interface Cancelled {
  cancelled: boolean;
  status: number;
}

export declare class RillError extends Error {
  readonly status: number;
  readonly body: { error?: string; message?: string; [field: string]: unknown };
}

export interface Client {
  follow(stream: string, handlers?: Handlers, options?: Options): Follow;
  generation(id: string, handlers?: Handlers, options?: Options): GenerationFollow;
  generate(request: object, handlers?: Handlers, options?: Options): Promise<GenerationFollow>;
  start(request: object, options?: Options): Promise<Started>;
  cancel(id: string, options?: Options): Promise<Cancelled>;
  forget(stream: string): void;
}

export declare function client(options?: Options): Client;
export declare function follow(stream: string, handlers?: Handlers, options?: Options): Follow;
export declare function generation(id: string, handlers?: Handlers, options?: Options): GenerationFollow;
export declare function generate(request: object, handlers?: Handlers, options?: Options): Promise<GenerationFollow>;
export declare function start(request: object, options?: Options): Promise<Started>;
export declare function cancel(id: string, options?: Options): Promise<Cancelled>;
export declare function forget(stream: string): void;
