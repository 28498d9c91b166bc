-- Take one request from a validator's quota for the current window, after checking the request is fresh.
-- KEYS[1] = total counter, KEYS[2] = synthetic counter (both expire with the window),
-- KEYS[3] = (optional) the request's replay marker
-- ARGV[1] = total limit, ARGV[2] = synthetic limit, ARGV[3] = 1 if synthetic, ARGV[4] = window ttl ms,
-- ARGV[5] = replay marker ttl ms (with KEYS[3])
-- Returns {1, used_total} taken, {0, used_total} quota spent, {-1, 0} the request was seen before
if KEYS[3] and not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[5]) then return {-1, 0} end
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(ARGV[1])
if total >= limit then return {0, total} end
if ARGV[3] == '1' then
  local synth = tonumber(redis.call('GET', KEYS[2]) or '0')
  if synth >= tonumber(ARGV[2]) then return {0, total} end
  redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
total = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, total}
