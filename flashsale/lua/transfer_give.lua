-- transfer_give: step 2 of a transfer between stock shards (transfer_take.lua is step 1):
-- adds the units to this shard, once per transfer id (a marker remembers it until the
-- shard's state ends, so the sweeper completing a transfer twice adds nothing). Runs on the
-- destination shard's hash slot.
--
-- KEYS[1] state  KEYS[2] marker of this transfer id
-- ARGV[1] units
-- Reply: 1 added; 0 added before; -1 the shard is not loaded (a load re-creates its share
--        from PostgreSQL, which counts these units; nothing is added here)
local state, marker = KEYS[1], KEYS[2]
if redis.call('EXISTS', marker) == 1 then
  return 0
end
local expire_at = redis.call('PEXPIRETIME', state)
if expire_at == -2 then
  return -1
end
redis.call('HINCRBY', state, 'allotted', tonumber(ARGV[1]))
redis.call('SET', marker, 1)
if expire_at > 0 then
  redis.call('PEXPIREAT', marker, expire_at)
end
return 1
