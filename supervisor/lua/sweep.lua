-- sweep: active jobs whose lease deadline has passed -> delayed (retry) or failed.
-- Their owner died or hung without anyone reaping it (e.g. a whole host was lost).
-- Atomic, so any number of sweepers may race: each job moves once.
-- KEYS: the queue key vector (see _lib.lua).
-- ARGV[1] job key prefix, ARGV[2] resource-wait prefix, ARGV[3] max deaths
-- (poison-pill limit), ARGV[4] max jobs to sweep.
-- Returns the ids moved.
local max_deaths, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', K.active, '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(expired) do
  local jobkey = JOB_PREFIX .. id
  local owner = redis.call('HGET', jobkey, 'owner') or '?'
  recover_dead(jobkey, id, now, 'lease expired, owner ' .. owner, max_deaths)
end
return expired
