-- One key's minute of rate limits, shared by every gateway process: leases of its request budget, and its
-- token count. Atomic, so the processes together are never granted more requests than the limit.
-- KEYS[1] = requests granted to processes this minute, KEYS[2] = tokens counted this minute
-- ARGV[1] = requests wanted now (0: none), ARGV[2] = requests/minute limit (0 = none), ARGV[3] = ttl ms,
-- ARGV[4] = requests given back (the unused rest of this process's leases),
-- ARGV[5] = requests this process admitted without a lease (while Redis was away),
-- ARGV[6] = tokens this process counted since it last said
-- Returns {requests granted to this call, requests granted in all, tokens in all}
local want, limit, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local granted = tonumber(redis.call('GET', KEYS[1]) or '0') - tonumber(ARGV[4]) + tonumber(ARGV[5])
if granted < 0 then granted = 0 end
local give = want
if limit > 0 then give = math.max(0, math.min(want, limit - granted)) end
granted = granted + give
redis.call('SET', KEYS[1], granted, 'PX', ttl)
local tokens = redis.call('INCRBY', KEYS[2], tonumber(ARGV[6]))
redis.call('PEXPIRE', KEYS[2], ttl)
return {give, granted, tokens}
