-- restore_records: bring back the idempotency records of redemptions PostgreSQL holds, so a
-- replay after a Redis flush gets its saved outcome. Never overwrites a record present.
-- Runs on the campaign's hash slot.
--
-- KEYS[i]  record of the i-th redemption's hold id
-- ARGV[1]  how long a record is remembered, s
-- ARGV[2i], ARGV[2i+1]  member id and request fingerprint of the i-th redemption
-- Reply: the number of records written
local ttl, written = tonumber(ARGV[1]), 0
for i, record in ipairs(KEYS) do
  if redis.call('EXISTS', record) == 0 then
    redis.call('HSET', record, 'state', 'done', 'member', ARGV[2 * i], 'fp', ARGV[2 * i + 1])
    redis.call('EXPIRE', record, ttl)
    written = written + 1
  end
end
return written
