-- load: put a campaign's state into Redis from PostgreSQL without overwriting live counters.
-- If the state is absent it is created (held = 0: no hold can exist without it); if it is
-- present, only mirror values newer than Redis's are applied, and held is never touched:
-- the counters (taken) by their version, the terms (allotted, limit, window) by theirs
-- (campaigns.meta_version, bumped by UpdateCampaign and EndCampaign). So an operator's
-- change reaches the gate in one atomic step, and a reload that read the row before the
-- change cannot undo it. Runs on the campaign's hash slot.
--
-- KEYS[1] state  KEYS[2] taken  KEYS[3] tver
-- ARGV[1] allotted  ARGV[2] per-member limit  ARGV[3] starts ms  ARGV[4] ends ms
-- ARGV[5] taken (committed + waiting for payment)  ARGV[6] its version
-- ARGV[7] how long the keys outlive the sale, ms: they expire then (a late call loads the
--         campaign again, for a minute at least, and is refused CAMPAIGN_NOT_ACTIVE)
-- ARGV[8] the terms' version (ARGV[1..4])
-- ARGV[9..] triples: member id, member taken, its version
-- Reply: {1} created, {0} refreshed
local state, taken, tver = KEYS[1], KEYS[2], KEYS[3]
local created = 0
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if redis.call('EXISTS', state) == 0 then
  redis.call('HSET', state, 'allotted', ARGV[1], 'limit', ARGV[2], 'starts_ms', ARGV[3],
             'ends_ms', ARGV[4], 'mver', ARGV[8], 'taken', ARGV[5], 'tver', ARGV[6], 'held', 0)
  created = 1
else
  if tonumber(ARGV[8]) > tonumber(redis.call('HGET', state, 'mver') or '0') then
    redis.call('HSET', state, 'allotted', ARGV[1], 'limit', ARGV[2], 'starts_ms', ARGV[3],
               'ends_ms', ARGV[4], 'mver', ARGV[8])
  end
  if tonumber(ARGV[6]) > tonumber(redis.call('HGET', state, 'tver') or '0') then
    redis.call('HSET', state, 'taken', ARGV[5], 'tver', ARGV[6])
  end
end
-- The window in force (this call's, or a newer one already there) sets the expiry.
local ends_ms = tonumber(redis.call('HGET', state, 'ends_ms'))
local expire_at = math.max(ends_ms + tonumber(ARGV[7]), now + 60000)
for i = 9, #ARGV, 3 do
  local member, units, version = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if version > tonumber(redis.call('HGET', tver, member) or '0') then
    redis.call('HSET', taken, member, units)
    redis.call('HSET', tver, member, version)
  end
end
-- resolve.lua gives taken and tver the state's expiry when it creates them later.
for _, key in ipairs({state, taken, tver}) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('PEXPIREAT', key, expire_at)
  end
end
return {created}
