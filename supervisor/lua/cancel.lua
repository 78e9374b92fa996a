-- cancel: queued / delayed (incl. waiting for a resource) -> cancelled.
-- Active jobs are not cancelled here (a running thread cannot be stopped).
-- KEYS: the queue key vector (see _lib.lua).
-- ARGV[1] job key prefix, ARGV[2] resource-wait prefix, ARGV[3] job id.
-- Returns the job's state before ('' when there is no such job); it changed only
-- when that was queued or delayed.
local id = ARGV[3]
local jobkey = JOB_PREFIX .. id
local f = redis.call('HMGET', jobkey, 'state', 'task', 'resource_id')
local state = f[1]
if not state then return '' end
if state ~= 'queued' and state ~= 'delayed' then return state end
redis.call('ZREM', state_index(state), id)
if redis.call('ZREM', K.blocked, id) == 1 then
  redis.call('LREM', RWAIT_PREFIX .. f[3], 0, id)
end
local now = now_ms()
redis.call('HSET', jobkey, 'state', 'cancelled', 'finished_at', now)
redis.call('ZADD', K.cancelled, now, id)
emit('cancelled', id, f[2], nil)
redis.call('PUBLISH', jobkey .. ':done', '{"state":"cancelled"}')
return state
