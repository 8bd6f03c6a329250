//! The Lua scripts of the Redis store: every write that must be atomic.
//!
//! Redis runs a script as one step, so a stream's counter, its entries, its
//! `finished` flag and its byte count never disagree, and no two nodes can
//! hand out the same id or both end a stream. Negative return codes are the
//! store's errors; see `redis.rs` for how they map to `StoreError`.

/// Appends one event.
///
/// KEYS: log, meta, index, lease, generations.
/// ARGV: name, type ('' = message), data, terminal ('1'/'0'), max events,
/// max bytes, max age (ms), max streams, mode ('append' or 'orphan').
///
/// Returns `{id, prefix}`, or `{-1, ""}` finished, `{-2, ""}` nothing to end,
/// `{-3, ""}` lease still held, `{-4, ""}` too many streams.
///
/// The id comes from `HINCRBY meta last 1` and is written as the entry id
/// `0-<id>`, so `XRANGE`/`XREAD` order is id order. Retention drops the
/// oldest entries while the stream holds more than max events, more than
/// max bytes (sizes of type + data as stored), or entries older than max
/// age by Redis's clock; at most 1000 per call. Both keys expire max age
/// after the last append.
pub const APPEND: &str = r#"
local fin = redis.call('HGET', KEYS[2], 'fin')
if ARGV[9] == 'orphan' then
  if redis.call('EXISTS', KEYS[4]) == 1 then return {-3, ''} end
  if (not fin) or fin == '1' then
    redis.call('SREM', KEYS[5], ARGV[1])
    return {-2, ''}
  end
end
if fin == '1' then return {-1, ''} end
if (not fin) and redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0
   and redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[8]) then
  return {-4, ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = redis.call('HINCRBY', KEYS[2], 'last', 1)
local size = string.len(ARGV[2]) + string.len(ARGV[3])
redis.call('XADD', KEYS[1], '0-' .. id, 't', ARGV[2], 'd', ARGV[3], 'x', ARGV[4], 'ts', now, 'n', size)
local bytes = redis.call('HINCRBY', KEYS[2], 'bytes', size)
redis.call('HSET', KEYS[2], 'fin', ARGV[4])
redis.call('SADD', KEYS[3], ARGV[1])
if ARGV[4] == '1' then
  redis.call('SREM', KEYS[5], ARGV[1])
  redis.call('DEL', KEYS[4])
end
local len = redis.call('XLEN', KEYS[1])
local cutoff = now - tonumber(ARGV[7])
for _ = 1, 1000 do
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  if not oldest then break end
  local ts, n = now, 0
  local f = oldest[2]
  for i = 1, #f, 2 do
    if f[i] == 'ts' then ts = tonumber(f[i + 1]) end
    if f[i] == 'n' then n = tonumber(f[i + 1]) end
  end
  if not (len > tonumber(ARGV[5]) or bytes > tonumber(ARGV[6]) or ts < cutoff) then break end
  redis.call('XDEL', KEYS[1], oldest[1])
  len = len - 1
  bytes = redis.call('HINCRBY', KEYS[2], 'bytes', -n)
end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return {id, redis.call('HGET', KEYS[2], 'prefix') or ''}
"#;

/// Creates an empty stream with a wire prefix.
///
/// KEYS: meta, index. ARGV: name, prefix, max streams, max age (ms).
/// Returns 1, or -1 exists, -4 too many streams.
pub const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[3]) then return -4 end
redis.call('HSET', KEYS[1], 'last', 0, 'fin', 0, 'bytes', 0, 'prefix', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"#;

/// Removes a stream and records the removal for other nodes.
/// KEYS: log, meta, index, removals. ARGV: name.
/// Returns its last id, or -1 when it did not exist.
pub const REMOVE: &str = r#"
local last = redis.call('HGET', KEYS[2], 'last')
redis.call('SREM', KEYS[3], ARGV[1])
if not last then return -1 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', 1000, '*', 'name', ARGV[1], 'last', last)
return tonumber(last)
"#;

/// Takes or renews a generation's lease and registers the generation.
///
/// KEYS: lease, cancel, generations, watched. ARGV: name, ttl (ms).
/// Returns `{cancel, watched}`: 1 when a cancel was requested (the request
/// is cleared), 1 when some node has marked the stream watched.
pub const RENEW_LEASE: &str = r#"
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
return {redis.call('DEL', KEYS[2]), redis.call('EXISTS', KEYS[4])}
"#;

/// Asks a generation's owner to cancel. KEYS: lease, cancel. ARGV: ttl (ms).
/// Returns 1 when a lease is held (the request is recorded), else 0.
pub const REQUEST_CANCEL: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return 1
"#;
