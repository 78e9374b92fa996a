-- delete: remove jobs that are not active (retract a queued job, drop a failed
-- one). Active jobs are refused: their worker still holds them.
-- KEYS: the queue key vector (see _lib.lua).
-- ARGV[1] job key prefix, ARGV[2] resource-wait prefix, ARGV[3] required state
-- ('' = any but active), ARGV[4] max jobs when no ids are given, then job ids
-- (none = the oldest ARGV[4] of the required state). Returns the ids deleted.
local required = ARGV[3]
local ids = {}
if #ARGV >= 5 then
  for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
elseif required ~= '' then
  ids = redis.call('ZRANGE', state_index(required), 0, tonumber(ARGV[4]) - 1)
end
local deleted = {}
for _, id in ipairs(ids) do
  local jobkey = JOB_PREFIX .. id
  local f = redis.call('HMGET', jobkey, 'state', 'task', 'resource_id')
  local state = f[1]
  if state and state ~= 'active' and (required == '' or required == state) then
    redis.call('ZREM', state_index(state), id)
    if redis.call('ZREM', K.blocked, id) == 1 then
      redis.call('LREM', RWAIT_PREFIX .. f[3], 0, id)
    end
    redis.call('DEL', jobkey, jobkey .. ':log')
    emit('deleted', id, f[2], nil)
    deleted[#deleted + 1] = id
  end
end
return deleted
