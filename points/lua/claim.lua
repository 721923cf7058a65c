-- claim: bind one of a member's idempotency keys to one request, whatever campaign it is
-- sent to. Runs on the member's hash slot, in the same round trip as reserve.lua on the
-- campaign's slot: a campaign's record knows the keys sent to that campaign only, so
-- without this a key refused on campaign A could still redeem on campaign B.
--
-- KEYS[1] claim  string {member:ID}:k:<key> = the request's fingerprint (which names the
--                campaign, the quantity and the address)
-- ARGV[1] fingerprint   ARGV[2] how long the binding is kept, s (the idempotency window)
--
-- Reply (points.gate.Claim):
--   {1} CLAIMED     a new binding, or this key's own request again
--   {2} KEY_REUSED  the key is bound to another request: refuse, change nothing
local bound = redis.call('GET', KEYS[1])
if bound then
  if bound ~= ARGV[1] then
    return {2}
  end
  return {1}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return {1}
