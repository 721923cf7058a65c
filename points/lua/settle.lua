-- settle: drop one points hold (each at most once) and apply the PostgreSQL state that came
-- with the decision when it is newer than Redis's. Creates the state from that mirror when
-- absent: no hold can exist without the state, so held = 0 is then exact.
-- Runs on the member's hash slot.
--
-- KEYS[1] state  KEYS[2] holds
-- ARGV[1] hold id ("" = none)   ARGV[2] spendable (balance - points waiting for payment)
-- ARGV[3] version (0 = no mirror)   ARGV[4] frozen (0|1)
-- Reply: {points released by this call}
local state, holds = KEYS[1], KEYS[2]
local hold_id, version = ARGV[1], tonumber(ARGV[3])
local released = 0

if hold_id ~= '' then
  local points = redis.call('HGET', holds, hold_id)
  if points then
    redis.call('HDEL', holds, hold_id)
    released = tonumber(points)
    if redis.call('EXISTS', state) == 1 then
      redis.call('HINCRBY', state, 'held', -released)
    end
  end
end

if version > 0 then
  if redis.call('EXISTS', state) == 0 then
    redis.call('HSET', state, 'spendable', ARGV[2], 'ver', version, 'frozen', ARGV[4], 'held', 0)
  elseif version > tonumber(redis.call('HGET', state, 'ver') or '0') then
    redis.call('HSET', state, 'spendable', ARGV[2], 'ver', version, 'frozen', ARGV[4])
  end
end
return {released}
