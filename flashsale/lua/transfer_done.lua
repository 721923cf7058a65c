-- transfer_done: step 3 of a transfer between stock shards: the units arrived (step 2), so
-- the source shard forgets the transfer. Runs on the source shard's hash slot.
--
-- KEYS[1] transfer record  KEYS[2] transfers (zset)
-- ARGV[1] transfer id
-- Reply: 1
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
