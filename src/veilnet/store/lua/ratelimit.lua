-- Fixed-window per-key limits: one request, and the tokens it may use.
-- KEYS[1] = request counter, KEYS[2] = token counter (both for the current minute)
-- ARGV[1] = requests/minute limit (0 = none), ARGV[2] = tokens/minute limit (0 = none), ARGV[3] = ttl ms,
-- ARGV[4] = tokens this key's finished requests used since the caller last counted them (charged first)
-- Returns {ok (1/0), which ('requests'/'tokens'/'')}
local rpm, tpm, owed = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
if owed > 0 then
  redis.call('INCRBY', KEYS[2], owed)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
if rpm > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= rpm then return {0, 'requests'} end
if tpm > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= tpm then return {0, 'tokens'} end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, ''}
