//! The Lua scripts of the Redis store: every write that must be atomic.
//!
//! Redis runs a script as one step, so a stream's counter, its entries, its
//! `finished` flag, its byte count and its idempotency keys never disagree,
//! and no two nodes can hand out the same id or both end a stream. Negative
//! return codes are the store's errors; see `redis.rs` for how they map to
//! `StoreError`. Times come from Redis (`TIME`), so nodes' clocks never
//! disagree about an expiry.

/// Detects that the master the script runs on is not the one that last
/// wrote a stream: a replica promoted by a failover, which may lack the
/// newest writes of the old master (replication is asynchronous).
///
/// Each stream's meta hash keeps `rid`, the replication id of the master
/// that last wrote it. A master that was promoted has a non-zero
/// `master_replid2`; one restarted (or new) has not. `fence(meta, fresh)`
/// records the current id, and when the stream was last written by another
/// master and this one was promoted, gives the stream a new wire prefix
/// (`fresh`) and keeps the old one in `prev`: ids given after the failover
/// can then never be mistaken for ids the old master gave and lost, and a
/// subscriber holding an old id is answered with `event: reset`. Returns
/// whether it fenced.
const FENCE: &str = r#"
local function fence(meta, fresh)
  local info = redis.call('INFO', 'replication')
  local rid = string.match(info, 'master_replid:(%w+)') or ''
  local rid2 = string.match(info, 'master_replid2:(%w+)') or ''
  local was = redis.call('HGET', meta, 'rid')
  if was == rid then return false end
  redis.call('HSET', meta, 'rid', rid)
  if (not was) or rid2 == '' or string.match(rid2, '^0+$') then return false end
  local old = redis.call('HGET', meta, 'prefix')
  if not old then return false end
  redis.call('HSET', meta, 'prev', old, 'prefix', fresh)
  return true
end
"#;

/// A limit on streams an append or create checks: a number (checked here,
/// against this partition's index: exact with one partition), `ask` (a new
/// stream returns -6 and the node counts every partition), or `admitted`
/// (the node has counted).
const LIMIT: &str = r#"
local function over_limit(index, name, limit, now)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  if limit == 'admitted' or redis.call('ZSCORE', index, name) then return nil end
  if limit == 'ask' then return -6 end
  if redis.call('ZCARD', index) >= tonumber(limit) then return -4 end
  return nil
end
"#;

/// Appends one event.
///
/// KEYS: log, meta, index, lease, generations, idem (hash), idemz (zset).
/// ARGV: name, type ('' = message), data, terminal ('1'/'0'), max events,
/// max bytes, max age (ms), the limit on streams (see `LIMIT`), mode
/// ('append' or 'orphan'),
/// epoch (the prefix of a stream this append creates), idempotency key
/// ('' = none), its request fingerprint.
///
/// Returns `{id, prefix, fresh}` (`fresh` 0 when the key had been seen and
/// nothing was stored), or `{-1}` finished, `{-2}` nothing to end, `{-3}`
/// lease still held, `{-4}` too many streams, `{-5}` key reused, `{-6}`
/// count the streams first. A stream written by another master before a
/// failover is fenced first (see `FENCE`).
///
/// The id comes from `HINCRBY meta last 1` and is written as the entry id
/// `0-<id>`, so `XRANGE`/`XREAD` order is id order. Each entry also carries
/// its stream's prefix (`p`), so a live reader that started following a
/// stream before it existed encodes its events with the right incarnation. Retention drops the
/// oldest entries while the stream holds more than max events, more than
/// max bytes (sizes of type + data as stored), or entries older than max
/// age; at most 1000 per call. Every key of the stream expires max age
/// after the last append. The index is a sorted set scored by each
/// stream's expiry, so streams that expired leave it before the limit on
/// streams is checked.
pub fn append() -> String {
    [FENCE, LIMIT, APPEND_BODY].concat()
}

const APPEND_BODY: &str = r#"
local fin = redis.call('HGET', KEYS[2], 'fin')
if fin then fence(KEYS[2], ARGV[10]) end
if ARGV[9] == 'orphan' then
  if redis.call('EXISTS', KEYS[4]) == 1 then return {-3} end
  if (not fin) or fin == '1' then
    redis.call('SREM', KEYS[5], ARGV[1])
    return {-2}
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local age = tonumber(ARGV[7])
if ARGV[11] ~= '' and fin then
  local seen = redis.call('HGET', KEYS[6], ARGV[11])
  if seen then
    local sep = string.find(seen, ':', 1, true)
    local sep2 = string.find(seen, ':', sep + 1, true)
    local fp = string.sub(seen, sep + 1, (sep2 or 0) - 1)
    if fp ~= ARGV[12] then return {-5} end
    local was = redis.call('HGET', KEYS[2], 'prefix') or ''
    if sep2 then was = string.sub(seen, sep2 + 1) end
    return {tonumber(string.sub(seen, 1, sep - 1)), was, 0}
  end
end
if fin == '1' then return {-1} end
if not fin then
  local refused = over_limit(KEYS[3], ARGV[1], ARGV[8], now)
  if refused then return {refused} end
  redis.call('DEL', KEYS[1], KEYS[6], KEYS[7])
  redis.call('HSET', KEYS[2], 'prefix', ARGV[10], 'bytes', 0)
  fence(KEYS[2], ARGV[10])
end
local id = redis.call('HINCRBY', KEYS[2], 'last', 1)
local prefix = redis.call('HGET', KEYS[2], 'prefix') or ''
local size = string.len(ARGV[2]) + string.len(ARGV[3])
redis.call('XADD', KEYS[1], '0-' .. id, 't', ARGV[2], 'd', ARGV[3], 'x', ARGV[4], 'ts', now, 'n', size, 'p', prefix)
local bytes = redis.call('HINCRBY', KEYS[2], 'bytes', size)
redis.call('HSET', KEYS[2], 'fin', ARGV[4])
redis.call('ZADD', KEYS[3], now + age, ARGV[1])
if ARGV[4] == '1' then
  redis.call('SREM', KEYS[5], ARGV[1])
  redis.call('DEL', KEYS[4])
end
local len = redis.call('XLEN', KEYS[1])
local cutoff = now - age
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
if ARGV[11] ~= '' then
  redis.call('HSET', KEYS[6], ARGV[11], id .. ':' .. ARGV[12] .. ':' .. prefix)
  redis.call('ZADD', KEYS[7], now, ARGV[11])
  local old = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', cutoff)
  local extra = redis.call('ZCARD', KEYS[7]) - math.max(tonumber(ARGV[5]), 1)
  if extra > 0 then
    for _, k in ipairs(redis.call('ZRANGE', KEYS[7], 0, extra - 1)) do table.insert(old, k) end
  end
  for _, k in ipairs(old) do
    redis.call('HDEL', KEYS[6], k)
    redis.call('ZREM', KEYS[7], k)
  end
end
for _, i in ipairs({1, 2, 6, 7}) do redis.call('PEXPIRE', KEYS[i], age) end
return {id, prefix, 1}
"#;

/// Creates an empty stream with a wire prefix and an owner.
///
/// KEYS: meta, index. ARGV: name, prefix, owner ('' = none), the limit on
/// streams (see `LIMIT`), max age (ms). Returns 1, or -1 exists, -4 too
/// many streams, -6 count the streams first.
pub fn create() -> String {
    [FENCE, LIMIT, CREATE_BODY].concat()
}

const CREATE_BODY: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local refused = over_limit(KEYS[2], ARGV[1], ARGV[4], now)
if refused then return refused end
redis.call('HSET', KEYS[1], 'last', 0, 'fin', 0, 'bytes', 0, 'prefix', ARGV[2], 'owner', ARGV[3])
fence(KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"#;

/// Counts the streams of one partition that have not expired, dropping
/// those that have from its index. KEYS: index. Returns the count.
pub const COUNT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"#;

/// Lists the streams that have not expired, dropping those that have from
/// the index. KEYS: index. Returns the names.
pub const LIST: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"#;

/// Removes a stream and records the removal for other nodes.
/// KEYS: log, meta, index, removals, idem, idemz. ARGV: name.
/// Returns its last id, or -1 when it did not exist.
pub const REMOVE: &str = r#"
local last = redis.call('HGET', KEYS[2], 'last')
redis.call('ZREM', KEYS[3], ARGV[1])
if not last then return -1 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[5], KEYS[6])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', 1000, '*', 'name', ARGV[1], 'last', last)
return tonumber(last)
"#;

/// Takes or renews a generation's lease and registers the generation.
///
/// KEYS: lease, cancel, generations, watched. ARGV: name, ttl (ms).
/// `watched` is a hash: node id → the time (ms) until which that node
/// listens; a time in the past is when it stopped. Returns `{cancel,
/// watched, unheard_ms}`: cancel 1 when a cancel was requested (the
/// request is cleared); watched 1 when some node listens now; else
/// unheard_ms is how long ago the last node stopped (-1: none ever did).
pub const RENEW_LEASE: &str = r#"
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local latest = -1
for _, v in ipairs(redis.call('HVALS', KEYS[4])) do
  local until_ms = tonumber(v)
  if until_ms and until_ms > latest then latest = until_ms end
end
local cancel = redis.call('DEL', KEYS[2])
if latest > now then return {cancel, 1, 0} end
if latest < 0 then return {cancel, 0, -1} end
return {cancel, 0, now - latest}
"#;

/// Marks streams this node listens to, or stopped listening to.
///
/// KEYS: the streams' `watched` hashes. ARGV: node id, ttl (ms), then one
/// flag per key: '1' listening (until now + ttl), '0' stopped (now).
pub const MARK_WATCHED: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local until_ms = now
  if ARGV[i + 2] == '1' then until_ms = now + ttl end
  redis.call('HSET', key, ARGV[1], until_ms)
  redis.call('PEXPIRE', key, ttl * 10)
end
return #KEYS
"#;

/// Asks a generation's owner to cancel. KEYS: lease, cancel. ARGV: ttl (ms).
/// Returns 1 when a lease is held (the request is recorded), else 0.
pub const REQUEST_CANCEL: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return 1
"#;

/// Claims an idempotency key for a value, or finds what it holds.
/// KEYS: the claim. ARGV: value, fingerprint, ttl (ms).
/// Returns `{1}` claimed, `{0, value}` held for the same request, `{-5}`
/// held for another request.
pub const CLAIM: &str = r#"
local held = redis.call('GET', KEYS[1])
if not held then
  redis.call('SET', KEYS[1], ARGV[2] .. ':' .. ARGV[1], 'PX', ARGV[3])
  return {1}
end
local sep = string.find(held, ':', 1, true)
if string.sub(held, 1, sep - 1) ~= ARGV[2] then return {-5} end
return {0, string.sub(held, sep + 1)}
"#;

/// Sets or deletes a stream's attributes only if they still hold what the
/// caller read. KEYS: attrs. ARGV: whether some were expected (`1`/`0`),
/// what, whether to set (`1`) or delete (`0`), the value, its expiry in
/// ms. Returns 1 when done, 0 when they had changed.
pub const SWAP_ATTRS: &str = r#"
local held = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if held ~= ARGV[2] then return 0 end
elseif held then
  return 0
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
else
  redis.call('DEL', KEYS[1])
end
return 1
"#;
