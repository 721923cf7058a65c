-- transfer_take: step 1 of moving free units between two stock shards of a split campaign
-- (flashsale/shards.py). Takes up to ARGV[1] free units (allotted - taken - held) out of
-- this shard and writes a transfer record, listed in `transfers` until step 3 deletes it:
-- a crash before step 3 leaves the record, which the leader's sweeper pass completes.
-- Idempotent by transfer id: a record present is answered again. Runs on the source
-- shard's hash slot.
--
-- KEYS[1] state  KEYS[2] transfer record (hash: n, to)  KEYS[3] transfers (zset: id -> ms)
-- ARGV[1] units wanted  ARGV[2] transfer id  ARGV[3] destination shard index
-- Reply: units taken (0: none free, or the shard is not loaded)
local state, record, transfers = KEYS[1], KEYS[2], KEYS[3]
local done = redis.call('HGET', record, 'n')
if done then
  return tonumber(done)
end
local s = redis.call('HMGET', state, 'allotted', 'taken', 'held')
if not s[1] then
  return 0
end
local n = math.min(tonumber(ARGV[1]), tonumber(s[1]) - tonumber(s[2]) - tonumber(s[3]))
if n <= 0 then
  return 0
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('HINCRBY', state, 'allotted', -n)
redis.call('HSET', record, 'n', n, 'to', ARGV[3])
redis.call('ZADD', transfers, now, ARGV[2])
-- They end with the shard's state (shard_load.lua set its expiry).
local expire_at = redis.call('PEXPIRETIME', state)
if expire_at > 0 then
  redis.call('PEXPIREAT', record, expire_at)
  redis.call('PEXPIREAT', transfers, expire_at)
end
return n
