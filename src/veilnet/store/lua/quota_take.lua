-- Take one request from a validator's quota for the current window.
-- KEYS[1] = total counter, KEYS[2] = synthetic counter (both expire with the window)
-- ARGV[1] = total limit, ARGV[2] = synthetic limit, ARGV[3] = 1 if synthetic, ARGV[4] = window ttl ms
-- Returns {ok (1/0), used_total}
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
