-- draw: hold one draw of a lottery for one member under one idempotency key, and pick its
-- prize. Runs on the lottery's hash slot: every key is {lottery:ID}...
--
-- KEYS[1] state     hash: starts_ms, ends_ms, daily, total, n (prizes), and per prize i
--                   (1..n): w<i> (weight), left<i> (stock - awarded - held; -1 = unlimited,
--                   the consolation)
-- KEYS[2] record    hash for this hold id: state (held|done|refused), member, fp, prize,
--                   deadline, day, reason, n1, n2
-- KEYS[3] deadlines zset: hold id -> deadline ms, in-flight draws only
-- KEYS[4] totals    hash: member -> draws (committed + held)
-- KEYS[5] day       hash: member -> draws on this UTC day (committed + held); its name
--                   carries the day (lottery/gate.py day_key)
-- ARGV[1] member id   ARGV[2] hold id   ARGV[3] request fingerprint
-- ARGV[4] the random number, an integer in [0, 2^52) from the server's `secrets` (never
--         the client's): exact in a Lua number, and math.fmod of it is exact
-- ARGV[5] how long a new hold lives, ms   ARGV[6] how long a refusal is remembered, s
-- ARGV[7] how long the day's counters live, s (to the day's end, plus a margin)
-- ARGV[8] the day KEYS[5] counts (YYYY-MM-DD), kept in the record for its release
--
-- The odds (docs/lottery.md): among the prizes with stock left (the consolation always),
-- prize i is drawn with probability w<i> / (sum of their weights). A prize whose stock runs
-- out leaves the draw, so the odds of the others shift up only then.
--
-- Reply (first element is lottery.gate.DrawCode):
--   {1, deadline, prize}   HELD: a new draw, its prize (1-based index) held
--   {2, deadline, prize}   IN_FLIGHT: this key already holds a draw, not yet resolved
--   {3, prize}             DONE: this key is in PostgreSQL; read the draw there
--   {4, reason, n1, n2}    REFUSED_BEFORE: the key was refused; refuse the same way
--   {5}                    KEY_REUSED: same key, different request
--   {6}                    NOT_LOADED: lottery state missing: load and retry
--   {7}                    NOT_ACTIVE: outside the lottery's window
--   {8, reason, limit, n}  LIMIT_EXCEEDED (reason TOTAL or DAILY, n = draws counted)
--   {10, deadline}         LAPSED: held past its deadline, unswept: the caller settles it
--                          (done if PostgreSQL has the key, else released) and asks again
local state, record, deadlines, totals, day = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local member, hold_id, fp, rand = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local deadline, refusal_ttl = now + tonumber(ARGV[5]), tonumber(ARGV[6])

local s = redis.call('HMGET', state, 'starts_ms', 'ends_ms', 'daily', 'total', 'n')
if not s[1] then
  return {6}
end

local r = redis.call('HMGET', record, 'state', 'fp', 'deadline', 'prize', 'reason', 'n1', 'n2')
if r[1] then
  if r[2] ~= fp then
    return {5}
  end
  if r[1] == 'done' then
    return {3, tonumber(r[4])}
  end
  if r[1] == 'refused' then
    return {4, r[5], tonumber(r[6]), tonumber(r[7])}
  end
  if tonumber(r[3]) > now then
    return {2, tonumber(r[3]), tonumber(r[4])}
  end
  return {10, tonumber(r[3])}
end

if now < tonumber(s[1]) or now >= tonumber(s[2]) then
  return {7}
end

local function refuse(reason, n1, n2)
  redis.call('HSET', record, 'state', 'refused', 'member', member, 'fp', fp,
             'reason', reason, 'n1', n1, 'n2', n2)
  redis.call('EXPIRE', record, refusal_ttl)
end

local daily, total, n = tonumber(s[3]), tonumber(s[4]), tonumber(s[5])
local mine = tonumber(redis.call('HGET', totals, member) or '0')
if mine >= total then
  refuse('TOTAL', total, mine)
  return {8, 'TOTAL', total, mine}
end
local today = tonumber(redis.call('HGET', day, member) or '0')
if today >= daily then
  refuse('DAILY', daily, today)
  return {8, 'DAILY', daily, today}
end

-- Pick among the prizes with stock left: the consolation (left = -1) is always one.
local weights, lefts, sum = {}, {}, 0
for i = 1, n do
  local w, left = tonumber(redis.call('HGET', state, 'w' .. i)),
                  tonumber(redis.call('HGET', state, 'left' .. i))
  lefts[i] = left
  if left ~= 0 then
    weights[i] = w
    sum = sum + w
  else
    weights[i] = 0
  end
end
local x, prize = math.fmod(rand, sum), n
for i = 1, n do
  if x < weights[i] then
    prize = i
    break
  end
  x = x - weights[i]
end
if lefts[prize] > 0 then
  redis.call('HINCRBY', state, 'left' .. prize, -1)
end

redis.call('HSET', record, 'state', 'held', 'member', member, 'fp', fp, 'prize', prize,
           'deadline', deadline, 'day', ARGV[8])
redis.call('PERSIST', record)
redis.call('ZADD', deadlines, deadline, hold_id)
redis.call('HINCRBY', totals, member, 1)
if redis.call('PTTL', totals) < 0 then  -- created by this draw: it ends with the state
  redis.call('PEXPIRE', totals, math.max(1, redis.call('PTTL', state)))
end
redis.call('HINCRBY', day, member, 1)
redis.call('EXPIRE', day, ARGV[7])
return {1, deadline, prize}
