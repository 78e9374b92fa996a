-- progress: record an active job's progress and announce it (no state change).
-- KEYS: the queue key vector (see _lib.lua).
-- ARGV[1] job key prefix, ARGV[2] resource-wait prefix, ARGV[3] job id,
-- ARGV[4] lease token, ARGV[5] progress (JSON text {"done","total","data"}).
-- Returns 1, or 0 when the job is no longer held with that token.
local id, token, progress = ARGV[3], ARGV[4], ARGV[5]
local jobkey = JOB_PREFIX .. id
local f = redis.call('HMGET', jobkey, 'state', 'lease', 'task')
if f[1] ~= 'active' or f[2] ~= token then return 0 end
redis.call('HSET', jobkey, 'progress', progress)
redis.call('PUBLISH', K.events,
  '{"event":"progress","id":' .. cjson.encode(id) .. ',"task":' .. cjson.encode(f[3]) ..
  ',"progress":' .. progress .. '}')
return 1
