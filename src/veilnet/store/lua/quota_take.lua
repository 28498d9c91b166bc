-- Take one request from a validator's quota for the current window, after checking the request is fresh.
-- One quota per validator for all its traffic: the miner is not told which requests are challenges.
-- KEYS[1] = the window's counter (expires with the window), KEYS[2] = (optional) the request's replay marker
-- ARGV[1] = limit, ARGV[2] = window ttl ms, ARGV[3] = replay marker ttl ms (with KEYS[2])
-- Returns {1, used} taken, {0, used} quota spent, {-1, 0} the request was seen before
if KEYS[2] and not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then return {-1, 0} end
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then return {0, used} end
used = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, used}
