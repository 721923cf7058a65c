-- settle: drop one points hold (each at most once) and apply the PostgreSQL state that came
-- with the decision when it is newer than Redis's. Creates the state from that mirror when
-- absent: no hold can exist without the state, so held = 0 is then exact.
-- Runs on the member's hash slot.
--
-- KEYS[1] state  KEYS[2] holds  KEYS[3] hinfo (hold id -> what the hold is for)
-- ARGV[1] hold id ("" = none)   ARGV[2] spendable (balance - points waiting for payment)
-- ARGV[3] version (0 = no mirror)   ARGV[4] frozen (0|1)
-- ARGV[5] eligible (0|1; "" = not read by this writer: keep Redis's). Applied with a newer
--         version, or whatever the version when Redis has no eligible flag yet (the flag
--         changes only with writers that always send it, so an older one is never stale
--         against a newer one that Redis has not seen).
-- ARGV[6] idle lifetime, s: the member's keys expire after this long without a hold or a
--         settle (the member is loaded again from PostgreSQL when next seen)
-- Reply: {points released by this call}
local state, holds, hinfo = KEYS[1], KEYS[2], KEYS[3]
local hold_id, version, eligible = ARGV[1], tonumber(ARGV[3]), ARGV[5]
local released = 0

if hold_id ~= '' then
  local points = redis.call('HGET', holds, hold_id)
  if points then
    redis.call('HDEL', holds, hold_id)
    redis.call('HDEL', hinfo, hold_id)
    released = tonumber(points)
    if redis.call('EXISTS', state) == 1 then
      redis.call('HINCRBY', state, 'held', -released)
    end
  end
end

if version > 0 then
  if redis.call('EXISTS', state) == 0 then
    redis.call('HSET', state, 'spendable', ARGV[2], 'ver', version, 'frozen', ARGV[4], 'held', 0)
    if eligible ~= '' then
      redis.call('HSET', state, 'eligible', eligible)
    end
  elseif version > tonumber(redis.call('HGET', state, 'ver') or '0') then
    redis.call('HSET', state, 'spendable', ARGV[2], 'ver', version, 'frozen', ARGV[4])
    if eligible ~= '' then
      redis.call('HSET', state, 'eligible', eligible)
    end
  elseif eligible ~= '' and redis.call('HEXISTS', state, 'eligible') == 0 then
    redis.call('HSET', state, 'eligible', eligible)
  end
end
-- Only the state needs it: holds and hinfo get theirs from hold.lua, which creates them,
-- and vanish when their last hold goes.
redis.call('EXPIRE', state, ARGV[6])
return {released}
