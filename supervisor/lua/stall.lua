-- stall: active -> stalled, a holding area (Thoonk's stall); retry.lua moves it back.
-- KEYS: the queue key vector (see _lib.lua).
-- ARGV[1] job key prefix, ARGV[2] resource-wait prefix, ARGV[3] job id,
-- ARGV[4] lease token ('' = any holder, for operators), ARGV[5] reason.
-- Returns 1 if stalled, 0 if the job was not active (or not held with that token).
local id, token, reason = ARGV[3], ARGV[4], ARGV[5]
local jobkey = JOB_PREFIX .. id
local f = redis.call('HMGET', jobkey, 'state', 'lease', 'task', 'resource_id')
if f[1] ~= 'active' or (token ~= '' and f[2] ~= token) then return 0 end
local now = now_ms()
redis.call('ZREM', K.active, id)
release_resource(f[4], id)
redis.call('HDEL', jobkey, 'owner', 'lease')
redis.call('HSET', jobkey, 'state', 'stalled', 'error', reason)
add_history(jobkey, {at = now, stalled = reason})
redis.call('ZADD', K.stalled, now, id)
emit('stalled', id, f[3], {reason = reason})
return 1
