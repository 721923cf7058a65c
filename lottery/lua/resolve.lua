-- resolve: settle one held draw, at most once. Runs on the lottery's hash slot.
--
-- KEYS[1] state  KEYS[2] record  KEYS[3] deadlines  KEYS[4] totals  KEYS[5] day (the day
--         the draw was counted on: its record's `day` field names it, lottery/gate.py)
-- ARGV[1] hold id   ARGV[2] member id
-- ARGV[3] outcome:
--   done     in PostgreSQL now: the record says so (a retry replays it) for ARGV[7] s
--   release  not in PostgreSQL: the prize's stock and the member's counts come back, the
--            key is free for a retry
--   refused  as release, and the key remembers the refusal (ARGV[4..6]) for ARGV[8] s
--   gone     as release, and the prize is out of stock (PostgreSQL said so: Redis was
--            behind): its left becomes 0
-- ARGV[4] reason  ARGV[5] n1  ARGV[6] n2  ARGV[7] record ttl, s  ARGV[8] refusal ttl, s
-- Reply: {1} resolved by this call, {0} nothing held under this id
local state, record, deadlines, totals, day = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local hold_id, member, outcome = ARGV[1], ARGV[2], ARGV[3]

local r = redis.call('HMGET', record, 'state', 'prize', 'fp')
if r[1] ~= 'held' then
  return {0}
end
redis.call('ZREM', deadlines, hold_id)
if outcome == 'done' then
  redis.call('HSET', record, 'state', 'done')
  redis.call('EXPIRE', record, ARGV[7])
  return {1}
end

-- Give back: the prize's stock (the consolation's is unlimited: nothing to give) and the
-- member's counts. Without the state (flushed) there is nothing to give back to: the next
-- load takes PostgreSQL's counts, which never had this draw.
local prize = r[2]
if redis.call('EXISTS', state) == 1 then
  if outcome == 'gone' then
    redis.call('HSET', state, 'left' .. prize, 0)
  elseif tonumber(redis.call('HGET', state, 'left' .. prize) or '-1') >= 0 then
    redis.call('HINCRBY', state, 'left' .. prize, 1)
  end
end
for _, counter in ipairs({totals, day}) do
  if tonumber(redis.call('HGET', counter, member) or '0') > 1 then
    redis.call('HINCRBY', counter, member, -1)
  else
    redis.call('HDEL', counter, member)
  end
end
if outcome == 'refused' then
  redis.call('DEL', record)
  redis.call('HSET', record, 'state', 'refused', 'member', member, 'reason', ARGV[4],
             'n1', ARGV[5], 'n2', ARGV[6], 'fp', r[3])
  redis.call('EXPIRE', record, ARGV[8])
else
  redis.call('DEL', record)
end
return {1}
