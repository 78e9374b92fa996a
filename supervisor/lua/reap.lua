-- reap: the active jobs of one dead owner (a child process that exited or was
-- killed) -> delayed (retry) or failed, with the reason. Only that owner's jobs.
-- KEYS: the queue key vector (see _lib.lua).
-- ARGV[1] job key prefix, ARGV[2] resource-wait prefix, ARGV[3] owner id,
-- ARGV[4] reason, ARGV[5] max deaths (poison-pill limit), ARGV[6] '1' to count a
-- death (a crash), '0' for a shutdown the supervisor ordered.
-- Returns the ids moved.
local owner, reason, max_deaths = ARGV[3], ARGV[4], tonumber(ARGV[5])
local count_death = ARGV[6] ~= '0'
local now = now_ms()
local moved = {}
for _, id in ipairs(redis.call('ZRANGE', K.active, 0, -1)) do
  local jobkey = JOB_PREFIX .. id
  if redis.call('HGET', jobkey, 'owner') == owner then
    recover_dead(jobkey, id, now, reason, max_deaths, count_death)
    moved[#moved + 1] = id
  end
end
return moved
