//! The Lua scripts that make each storage write atomic. Every one is a compare-and-set on the
//! stream's `ver` field: the Rust side reads the state, applies the shared rules, and the script
//! commits only if nothing changed meanwhile (else the caller re-reads and retries). So the
//! rules live once, in Rust, and Redis only guarantees atomicity.

/// Commit appends (a batch of them, or a keyed append). KEYS: meta, data, producers, channel,
/// then (keyed appends) one dedup key per record. ARGV: expected `<ver>:<gen>` (the generation
/// too, because a re-created stream counts `ver` from 1 again and a writer may hold a meta it
/// read long ago: see `meta_cache.rs`), first index, record count
/// n, n records, field count f, f name/value pairs, producer count p, p id/value pairs, notify
/// payload, pexpire ms (0 = none), then with dedup keys: their pexpire ms and one value per key.
pub(super) const COMMIT: &str = r#"
local current = redis.call('HMGET', KEYS[1], 'ver', 'gen')
if ((current[1] or '') .. ':' .. (current[2] or '')) ~= ARGV[1] then return 0 end
local first = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
for i = 1, n do
  redis.call('XADD', KEYS[2], (first + i) .. '-0', 'd', ARGV[3 + i])
end
local at = 4 + n
local f = tonumber(ARGV[at])
for j = 0, f - 1 do
  redis.call('HSET', KEYS[1], ARGV[at + 1 + 2 * j], ARGV[at + 2 + 2 * j])
end
at = at + 1 + 2 * f
local p = tonumber(ARGV[at])
for j = 0, p - 1 do
  redis.call('HSET', KEYS[3], ARGV[at + 1 + 2 * j], ARGV[at + 2 + 2 * j])
end
at = at + 1 + 2 * p
for k = 5, #KEYS do
  redis.call('SET', KEYS[k], ARGV[at + k - 2], 'PX', ARGV[at + 2])
end
redis.call('HINCRBY', KEYS[1], 'ver', 1)
local ttl = tonumber(ARGV[at + 1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
redis.call('PUBLISH', KEYS[4], ARGV[at])
return 1
"#;

/// Create a stream whose meta key is absent. KEYS: meta, data, source meta (or meta again).
/// ARGV: expected source ver ('' when not a fork), record count n, n records, field count f,
/// f name/value pairs, pexpire ms (0 = none).
pub(super) const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fork = ARGV[1] ~= ''
if fork and (redis.call('HGET', KEYS[3], 'ver') or '') ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[2])
for i = 1, n do
  redis.call('XADD', KEYS[2], i .. '-0', 'd', ARGV[2 + i])
end
local at = 3 + n
local f = tonumber(ARGV[at])
for j = 0, f - 1 do
  redis.call('HSET', KEYS[1], ARGV[at + 1 + 2 * j], ARGV[at + 2 + 2 * j])
end
if fork then
  redis.call('HINCRBY', KEYS[3], 'live_forks', 1)
  redis.call('HINCRBY', KEYS[3], 'ver', 1)
  -- The source must outlive its forks' need for its state: no key expiry while forked.
  redis.call('PERSIST', KEYS[3])
end
local ttl = tonumber(ARGV[at + 1 + 2 * f])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
"#;

/// One step of a delete, as the Rust side decided it from the meta it read (see
/// `crate::rules::removal`); `ver` guarantees the live forks it decided on are unchanged.
/// KEYS: meta, data, producers, parent meta (or meta again), channel.
/// ARGV: expected ver, mode (`soft`: mark deleted; `hard`: remove; `hard_fork`: remove and
/// release the parent), notify payload.
/// Returns `{0}` on conflict, `{1}` when done, and `{2, soft_deleted, live_forks}` (the
/// parent's, after the release) when a fork was removed and its parent still exists.
pub(super) const REMOVE: &str = r#"
if (redis.call('HGET', KEYS[1], 'ver') or '') ~= ARGV[1] then return {0} end
redis.call('PUBLISH', KEYS[5], ARGV[3])
if ARGV[2] == 'soft' then
  redis.call('HSET', KEYS[1], 'soft_deleted', '1')
  redis.call('HINCRBY', KEYS[1], 'ver', 1)
  return {1}
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if ARGV[2] == 'hard_fork' and redis.call('EXISTS', KEYS[4]) == 1 then
  local left = redis.call('HINCRBY', KEYS[4], 'live_forks', -1)
  redis.call('HINCRBY', KEYS[4], 'ver', 1)
  local soft = tonumber(redis.call('HGET', KEYS[4], 'soft_deleted') or '0') or 0
  return {2, soft, left}
end
return {1}
"#;
