-- hold: hold a member's points for one redemption. Runs on the member's hash slot.
--
-- KEYS[1] state  hash: spendable, ver, frozen, eligible, held
--                (spendable/ver/frozen/eligible mirror PostgreSQL; held = points in
--                in-flight holds)
-- KEYS[2] holds  hash: hold id -> points
-- ARGV[1] hold id ("member:key")   ARGV[2] points
-- ARGV[3] idle lifetime, s: the member's keys expire after this long without a hold or a
--         settle (the member is loaded again from PostgreSQL when next seen)
--
-- Reply (first element is points.gate.Hold):
--   {1} HELD   {2} ALREADY_HELD (same hold id: a retry)   {3, available} INSUFFICIENT
--   {4} FROZEN {5} NOT_LOADED (state or its eligible flag missing: load and retry)
--   {6} BELOW_THRESHOLD (lifetime earned points below the redemption threshold)
local state, holds = KEYS[1], KEYS[2]
local hold_id, points = ARGV[1], tonumber(ARGV[2])

local s = redis.call('HMGET', state, 'spendable', 'frozen', 'held', 'eligible')
if not s[1] or not s[4] then
  return {5}
end
if redis.call('HEXISTS', holds, hold_id) == 1 then
  return {2}
end
if s[2] == '1' then
  return {4}
end
if s[4] == '0' then
  return {6}
end
local available = tonumber(s[1]) - tonumber(s[3])
if available < points then
  return {3, available}
end
redis.call('HSET', holds, hold_id, points)
redis.call('HINCRBY', state, 'held', points)
redis.call('EXPIRE', state, ARGV[3])
redis.call('EXPIRE', holds, ARGV[3])
return {1}
