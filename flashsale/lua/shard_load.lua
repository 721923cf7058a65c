-- shard_load: put one stock shard of a split campaign (flashsale/shards.py) into Redis
-- without overwriting live counters. The shard's state has the shape of a campaign's
-- (reserve.lua and resolve.lua run on it unchanged), but its allotted is the shard's own
-- share, moved by transfers, and its taken counts the units this shard handed to
-- PostgreSQL (resolve.lua, version -1), not the campaign's total.
-- If the state is absent it is created with its share of the allotment (ARGV[1]) and of the
-- units PostgreSQL counts as taken (ARGV[9]), so the shards add up to the campaign; if present, only a newer terms
-- version changes it: limit and window always, and the allotment's change (new total minus
-- the total it last saw) on shard 0 alone. Runs on the shard's hash slot {campaign:ID:k}.
--
-- KEYS[1] state  KEYS[2] taken  KEYS[3] tver
-- ARGV[1] units for a new state  ARGV[2] per-member limit  ARGV[3] starts ms
-- ARGV[4] ends ms  ARGV[5] how long the keys outlive the sale, ms
-- ARGV[6] the terms' version  ARGV[7] the campaign's allotment (all shards)
-- ARGV[8] 1 on shard 0 (takes allotment changes), else 0
-- ARGV[9] units taken, for a new state
-- ARGV[10..] triples: member id, member taken, its version (members homed here)
-- Reply: {1} created, {0} refreshed
local state, taken, tver = KEYS[1], KEYS[2], KEYS[3]
local created = 0
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if redis.call('EXISTS', state) == 0 then
  redis.call('HSET', state, 'allotted', ARGV[1], 'limit', ARGV[2], 'starts_ms', ARGV[3],
             'ends_ms', ARGV[4], 'mver', ARGV[6], 'callotted', ARGV[7], 'taken', ARGV[9],
             'tver', 0, 'held', 0)
  created = 1
elseif tonumber(ARGV[6]) > tonumber(redis.call('HGET', state, 'mver') or '0') then
  if ARGV[8] == '1' then
    local seen = tonumber(redis.call('HGET', state, 'callotted') or ARGV[7])
    local allotted = tonumber(redis.call('HGET', state, 'allotted'))
    -- Never below what the shard has taken or holds: PostgreSQL's guard caps the rest.
    local floor = tonumber(redis.call('HGET', state, 'taken')) + tonumber(redis.call('HGET', state, 'held'))
    redis.call('HSET', state, 'allotted', math.max(floor, allotted + tonumber(ARGV[7]) - seen))
  end
  redis.call('HSET', state, 'limit', ARGV[2], 'starts_ms', ARGV[3], 'ends_ms', ARGV[4],
             'mver', ARGV[6], 'callotted', ARGV[7])
end
local ends_ms = tonumber(redis.call('HGET', state, 'ends_ms'))
local expire_at = math.max(ends_ms + tonumber(ARGV[5]), now + 60000)
for i = 10, #ARGV, 3 do
  local member, units, version = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if version > tonumber(redis.call('HGET', tver, member) or '0') then
    redis.call('HSET', taken, member, units)
    redis.call('HSET', tver, member, version)
  end
end
for _, key in ipairs({state, taken, tver}) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('PEXPIREAT', key, expire_at)
  end
end
return {created}
