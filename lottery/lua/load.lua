-- load: the lottery's state from PostgreSQL, when Redis has none (first draw, or after a
-- flush). Never overwrites a live state: holds in flight are counted only there.
-- Runs on the lottery's hash slot.
--
-- KEYS[1] state  KEYS[2] totals  KEYS[3] day (today's, UTC)
-- ARGV[1] ttl of state and totals, s (to the lottery's end plus the retention)
-- ARGV[2] ttl of the day's counters, s
-- ARGV[3] starts_ms  ARGV[4] ends_ms  ARGV[5] daily  ARGV[6] total  ARGV[7] n (prizes)
-- then per prize i: weight, left (stock - awarded; -1 = unlimited)
-- then the count c of member rows, then per member: id, draws in total, draws today
-- Reply: {1} loaded, {0} a state was there already
local state, totals, day = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', state) == 1 then
  return {0}
end
local n = tonumber(ARGV[7])
redis.call('HSET', state, 'starts_ms', ARGV[3], 'ends_ms', ARGV[4], 'daily', ARGV[5],
           'total', ARGV[6], 'n', n)
local a = 8
for i = 1, n do
  redis.call('HSET', state, 'w' .. i, ARGV[a], 'left' .. i, ARGV[a + 1])
  a = a + 2
end
local c = tonumber(ARGV[a])
a = a + 1
for _ = 1, c do
  if tonumber(ARGV[a + 1]) > 0 then
    redis.call('HSETNX', totals, ARGV[a], ARGV[a + 1])
  end
  if tonumber(ARGV[a + 2]) > 0 then
    redis.call('HSETNX', day, ARGV[a], ARGV[a + 2])
  end
  a = a + 3
end
redis.call('EXPIRE', state, ARGV[1])
if redis.call('EXISTS', totals) == 1 then
  redis.call('EXPIRE', totals, ARGV[1])
end
if redis.call('EXISTS', day) == 1 then
  redis.call('EXPIRE', day, ARGV[2])
end
return {1}
