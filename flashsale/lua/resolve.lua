-- resolve: settle holds of one campaign (each hold resolves at most once), and apply the
-- PostgreSQL counters that came back with the decision, when they are newer than Redis's.
-- A group commit resolves all its holds of a campaign in one call, so the counters move
-- from "held" to "taken" in one atomic step: no reader ever sees them counted twice or not
-- at all. Runs on the campaign's hash slot.
--
-- KEYS[1] state  KEYS[2] deadlines  KEYS[3] mheld  KEYS[4] taken
-- KEYS[5] tver   hash: member -> version of that member's taken mirror
-- KEYS[5 + i]    record of the i-th hold
-- ARGV[1] how long a done/refused record is remembered, s
-- ARGV[2] campaign taken  ARGV[3] its version (0 = no mirror; -1 = a stock shard of a
--         split campaign, flashsale/shards.py: its taken is its own, not PostgreSQL's
--         campaign total, and a held hold resolved done moves its units to it)
-- ARGV[4] expired-before ms: only resolve a hold whose deadline is before this (the
--         sweeper's guard against a retry that renewed it); 0 = unconditional
-- ARGV[5] how long a refused record is remembered, s (ARGV[1] is for done records)
-- Then 9 values per hold, in KEYS order:
--   member id, hold id, request fingerprint,
--   outcome: done     the redemption is in PostgreSQL (units now counted in taken)
--            release  units go back; the key is free for a retry
--            refused  units go back; the key remembers the refusal
--   reason, n1, n2 (refusal details, for outcome refused),
--   member taken, its version (0 = no mirror)
--
-- Reply, one per hold: 1 a held hold was resolved; 0 no held hold (already resolved, or
-- lost); 2 the hold has not expired (expired-before given): nothing changed for it
local state, deadlines, mheld, taken, tver = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local ttl, expired_before, refusal_ttl = tonumber(ARGV[1]), tonumber(ARGV[4]), tonumber(ARGV[5])
local loaded = redis.call('EXISTS', state) == 1
local shard_taken = tonumber(ARGV[3]) < 0
local replies = {}

for i = 1, #KEYS - 5 do
  local record, a = KEYS[5 + i], 5 + (i - 1) * 9
  local member, hold_id, fp, outcome = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local r = redis.call('HMGET', record, 'state', 'qty', 'deadline')
  if expired_before > 0 and r[1] == 'held' and tonumber(r[3]) >= expired_before then
    replies[i] = 2
  else
    replies[i] = 0
    if r[1] == 'held' then
      local qty = tonumber(r[2])
      if loaded then
        redis.call('HINCRBY', state, 'held', -qty)
        -- A member with nothing in flight has no field (bounded memory: a Redeem by an
        -- unknown member, or a buyer who left, leaves nothing behind).
        if redis.call('HINCRBY', mheld, member, -qty) <= 0 then
          redis.call('HDEL', mheld, member)
        end
      end
      redis.call('ZREM', deadlines, hold_id)
      if shard_taken and loaded and outcome == 'done' then
        redis.call('HINCRBY', state, 'taken', qty)
      end
      replies[i] = 1
    end
    if outcome == 'release' then
      if r[1] == 'held' then
        redis.call('DEL', record)
      end
    elseif outcome == 'done' then
      redis.call('HSET', record, 'state', 'done', 'member', member, 'fp', fp)
      redis.call('HDEL', record, 'deadline')
      redis.call('EXPIRE', record, ttl)
    elseif outcome == 'refused' then
      redis.call('HSET', record, 'state', 'refused', 'member', member, 'fp', fp,
                 'reason', ARGV[a + 5], 'n1', ARGV[a + 6], 'n2', ARGV[a + 7])
      redis.call('EXPIRE', record, refusal_ttl)
    end
    local mversion = tonumber(ARGV[a + 9])
    if loaded and mversion > 0
       and mversion > tonumber(redis.call('HGET', tver, member) or '0') then
      redis.call('HSET', taken, member, ARGV[a + 8])
      redis.call('HSET', tver, member, mversion)
    end
  end
end

-- The per-member mirrors end with the campaign's state (load.lua set its expiry).
if loaded then
  local expire_at = redis.call('PEXPIRETIME', state)
  if expire_at > 0 then
    for _, key in ipairs({taken, tver}) do
      if redis.call('PTTL', key) == -1 then
        redis.call('PEXPIREAT', key, expire_at)
      end
    end
  end
end
local version = tonumber(ARGV[3])
if loaded and version > 0 and version > tonumber(redis.call('HGET', state, 'tver') or '0') then
  redis.call('HSET', state, 'taken', ARGV[2], 'tver', version)
end
return replies
