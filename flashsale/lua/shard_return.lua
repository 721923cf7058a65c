-- shard_return: units of a cancelled or expired redemption of a split campaign
-- (flashsale/shards.py) go back to its member's home shard, once per redemption. A one-slot
-- campaign needs no such step (its taken mirrors PostgreSQL's by version); a shard's taken
-- is its own, so the return is counted here, remembered by a marker that ends with the
-- shard's state. Runs on the home shard's hash slot.
--
-- KEYS[1] state  KEYS[2] marker of this redemption's return
-- ARGV[1] units
-- Reply: 1 returned; 0 returned before; -1 the shard is not loaded (a load re-creates its
--        share from PostgreSQL, which counts the return already)
local state, marker = KEYS[1], KEYS[2]
if redis.call('EXISTS', marker) == 1 then
  return 0
end
local expire_at = redis.call('PEXPIRETIME', state)
if expire_at == -2 then
  return -1
end
local taken = tonumber(redis.call('HGET', state, 'taken') or '0')
redis.call('HSET', state, 'taken', math.max(0, taken - tonumber(ARGV[1])))
redis.call('SET', marker, 1)
if expire_at > 0 then
  redis.call('PEXPIREAT', marker, expire_at)
end
return 1
