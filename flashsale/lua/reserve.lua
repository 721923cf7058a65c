-- reserve: hold units of one campaign for one member under one idempotency key.
-- Runs on the campaign's hash slot: every key is {campaign:ID}...
--
-- KEYS[1] state     hash: allotted, limit, starts_ms, ends_ms, taken, tver, held
--                   (taken/tver mirror PostgreSQL; held = units in in-flight holds)
-- KEYS[2] record    hash for this hold id: state (held|done|refused), member, qty, fp,
--                   deadline, reason, n1, n2
-- KEYS[3] deadlines zset: hold id -> deadline ms, in-flight holds only
-- KEYS[4] mheld     hash: member -> units in in-flight holds
-- KEYS[5] taken     hash: member -> units taken in PostgreSQL (mirror)
-- ARGV[1] member id      ARGV[2] hold id ("member:key")   ARGV[3] quantity
-- ARGV[4] request fingerprint
-- ARGV[5] 1: answer SOLD_OUT without remembering it (a stock shard of a split campaign,
--         flashsale/shards.py: units may still be moved in from the other shards, and the
--         key must stay free for the call that follows); anything else: remember it
-- ARGV[6] how long a new hold lives, ms   ARGV[7] how long a refusal is remembered, s
--
-- Time is Redis's own (TIME), for the sale window and the hold's deadline alike: every
-- server process that shares this Redis agrees whether the sale is open, whatever its own
-- clock says. PostgreSQL's commit guard uses its own clock; the two must agree within the
-- commit fence (SURGE_COMMIT_FENCE_SECONDS), which NTP gives by a wide margin.
--
-- Reply (first element is flashsale.gate.Reserve):
--   {1, deadline}        HELD: a new hold
--   {2, deadline}        IN_FLIGHT: this key already holds units, not yet resolved
--   {3}                  DONE: this key is in PostgreSQL; read the redemption there
--   {4, reason, n1, n2}  REFUSED_BEFORE: the key was refused; refuse the same way
--   {5}                  KEY_REUSED: same key, different request
--   {6}                  NOT_LOADED: campaign state missing (flushed): load and retry
--   {7}                  NOT_ACTIVE: outside the sale window
--   {8, limit, taken}    LIMIT_EXCEEDED
--   {9, remaining}       SOLD_OUT
--   {10, deadline}       LAPSED: this key holds units past the hold's deadline and the
--                        sweeper has not settled it yet. Whether PostgreSQL committed it is
--                        not known here, so nothing changes: the caller settles the lapsed
--                        hold as the sweeper would (Settler.settle_lapsed_holds: done if
--                        PostgreSQL has the key, else released on both slots) and calls
--                        again. Voiding it here instead could save a refusal for a
--                        committed key and leave its points hold behind on {member:ID}.
local state, record, deadlines, mheld, taken = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local member, hold_id, qty, fp = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local deadline, refusal_ttl = now + tonumber(ARGV[6]), tonumber(ARGV[7])

local s = redis.call('HMGET', state, 'allotted', 'limit', 'starts_ms', 'ends_ms', 'taken', 'held')
if not s[1] then
  return {6}
end

local r = redis.call('HMGET', record, 'state', 'fp', 'deadline', 'reason', 'n1', 'n2')
if r[1] then
  if r[2] ~= fp then
    return {5}
  end
  if r[1] == 'done' then
    return {3}
  end
  if r[1] == 'refused' then
    return {4, r[4], tonumber(r[5]), tonumber(r[6])}
  end
  if tonumber(r[3]) > now then
    return {2, tonumber(r[3])}
  end
  return {10, tonumber(r[3])}
end

local allotted, limit = tonumber(s[1]), tonumber(s[2])
if now < tonumber(s[3]) or now >= tonumber(s[4]) then
  return {7}
end

local function refuse(reason, n1, n2)
  redis.call('HSET', record, 'state', 'refused', 'member', member, 'qty', qty, 'fp', fp,
             'reason', reason, 'n1', n1, 'n2', n2)
  redis.call('EXPIRE', record, refusal_ttl)
end

local mine = tonumber(redis.call('HGET', taken, member) or '0')
           + tonumber(redis.call('HGET', mheld, member) or '0')
if mine + qty > limit then
  refuse('LIMIT_EXCEEDED', limit, mine)
  return {8, limit, mine}
end

local remaining = allotted - tonumber(s[5]) - tonumber(s[6])
if remaining < qty then
  if ARGV[5] ~= '1' then
    refuse('SOLD_OUT', remaining, 0)
  end
  return {9, remaining}
end

redis.call('HSET', record, 'state', 'held', 'member', member, 'qty', qty, 'fp', fp,
           'deadline', deadline)
redis.call('PERSIST', record)
redis.call('ZADD', deadlines, deadline, hold_id)
redis.call('HINCRBY', state, 'held', qty)
redis.call('HINCRBY', mheld, member, qty)
return {1, deadline}
