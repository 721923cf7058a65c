-- resolve: settle one hold of a campaign (each hold resolves at most once), and apply the
-- PostgreSQL counters that came back with the decision, when they are newer than Redis's.
-- Runs on the campaign's hash slot.
--
-- KEYS[1] state  KEYS[2] record  KEYS[3] deadlines  KEYS[4] mheld  KEYS[5] taken
-- KEYS[6] tver   hash: member -> version of that member's taken mirror
-- ARGV[1] member id   ARGV[2] hold id   ARGV[3] request fingerprint
-- ARGV[4] outcome: done    the redemption is in PostgreSQL (units now counted in taken)
--                  release units go back; the key is free for a retry
--                  refused units go back; the key remembers the refusal
-- ARGV[5] reason  ARGV[6] n1  ARGV[7] n2   (refusal details, for outcome refused)
-- ARGV[8] how long a done/refused record is remembered, s
-- ARGV[9] campaign taken  ARGV[10] its version (0 = no mirror)
-- ARGV[11] member taken   ARGV[12] its version (0 = no mirror)
-- ARGV[13] expired-before ms: only resolve a hold whose deadline is before this (the
--          sweeper's guard against a retry that renewed it); 0 = unconditional
--
-- Reply: {1} a held hold was resolved; {0} no held hold (already resolved, or lost);
--        {2} the hold has not expired (sweeper only): nothing changed
local state, record, deadlines, mheld, taken, tver = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local member, hold_id, fp, outcome = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ttl = tonumber(ARGV[8])
local expired_before = tonumber(ARGV[13])

local r = redis.call('HMGET', record, 'state', 'qty', 'deadline')
if expired_before > 0 and r[1] == 'held' and tonumber(r[3]) >= expired_before then
  return {2}
end

local resolved = 0
if r[1] == 'held' then
  local qty = tonumber(r[2])
  if redis.call('EXISTS', state) == 1 then
    redis.call('HINCRBY', state, 'held', -qty)
    redis.call('HINCRBY', mheld, member, -qty)
  end
  redis.call('ZREM', deadlines, hold_id)
  resolved = 1
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
             'reason', ARGV[5], 'n1', ARGV[6], 'n2', ARGV[7])
  redis.call('EXPIRE', record, ttl)
end

if redis.call('EXISTS', state) == 1 then
  local version = tonumber(ARGV[10])
  if version > 0 and version > tonumber(redis.call('HGET', state, 'tver') or '0') then
    redis.call('HSET', state, 'taken', ARGV[9], 'tver', version)
  end
  local mversion = tonumber(ARGV[12])
  if mversion > 0 and mversion > tonumber(redis.call('HGET', tver, member) or '0') then
    redis.call('HSET', taken, member, ARGV[11])
    redis.call('HSET', tver, member, mversion)
  end
end
return {resolved}
