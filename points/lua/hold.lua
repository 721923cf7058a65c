-- hold: hold a member's points for one redemption. Runs on the member's hash slot.
--
-- KEYS[1] state  hash: spendable, ver, frozen, eligible, held
--                (spendable/ver/frozen/eligible mirror PostgreSQL; held = points in
--                in-flight holds)
-- KEYS[2] holds  hash: hold id -> points
-- KEYS[3] hinfo  hash: hold id -> "<deadline ms>:<campaign id>" (what the hold is for)
-- ARGV[1] hold id ("member:key")   ARGV[2] points
-- ARGV[3] idle lifetime, s: the member's keys expire after this long without a hold or a
--         settle (the member is loaded again from PostgreSQL when next seen)
-- ARGV[4] the hold's deadline, ms (the campaign's hold's: reserve.lua set it)
-- ARGV[5] campaign id
--
-- A points hold past its deadline counts for nothing: by then PostgreSQL has committed its
-- redemption or never will (the commit fence), so the hold is dropped here, before anything
-- is refused because of it. That is what frees points whose settle was lost (a process
-- killed between the campaign's resolve and this slot's settle) when nobody else would.
--
-- Reply {code, available, dropped}; code is points.gate.Hold:
--   1 HELD   2 ALREADY_HELD (same hold id: a retry)   3 INSUFFICIENT (with available)
--   4 FROZEN 5 NOT_LOADED (state or its eligible flag missing: load and retry)
--   6 BELOW_THRESHOLD (lifetime earned points below the redemption threshold)
-- dropped = lapsed holds dropped by this call (their mirror may be stale: reload it)
local state, holds, hinfo = KEYS[1], KEYS[2], KEYS[3]
local hold_id, points = ARGV[1], tonumber(ARGV[2])

local s = redis.call('HMGET', state, 'spendable', 'frozen', 'held', 'eligible')
if not s[1] or not s[4] then
  return {5, 0, 0}
end
if redis.call('HEXISTS', holds, hold_id) == 1 then
  return {2, 0, 0}
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local dropped, held = 0, tonumber(s[3])
local info = redis.call('HGETALL', hinfo)
for i = 1, #info, 2 do
  local deadline = tonumber(string.match(info[i + 1], '^(%d+):'))
  if deadline < now then
    local lapsed = tonumber(redis.call('HGET', holds, info[i]) or '0')
    redis.call('HDEL', holds, info[i])
    redis.call('HDEL', hinfo, info[i])
    held = held - lapsed
    dropped = dropped + 1
  end
end
if dropped > 0 then
  redis.call('HSET', state, 'held', held)
end

if s[2] == '1' then
  return {4, 0, dropped}
end
if s[4] == '0' then
  return {6, 0, dropped}
end
local available = tonumber(s[1]) - held
if available < points then
  return {3, available, dropped}
end
redis.call('HSET', holds, hold_id, points)
redis.call('HSET', hinfo, hold_id, ARGV[4] .. ':' .. ARGV[5])
redis.call('HINCRBY', state, 'held', points)
for _, key in ipairs({state, holds, hinfo}) do
  redis.call('EXPIRE', key, ARGV[3])
end
return {1, 0, dropped}
