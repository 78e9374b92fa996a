-- retry: failed / stalled / cancelled -> queued, for a fresh run (attempts and
-- deaths reset; failures and history kept).
-- KEYS: the queue key vector (see _lib.lua).
-- ARGV[1] job key prefix, ARGV[2] resource-wait prefix, ARGV[3] source state,
-- ARGV[4] max jobs when no ids are given, then job ids (none = the oldest ARGV[4]).
-- Returns the ids moved.
local source = ARGV[3]
local index = state_index(source)
local ids = {}
if #ARGV >= 5 then
  for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', index, 0, tonumber(ARGV[4]) - 1)
end
local moved = {}
for _, id in ipairs(ids) do
  local jobkey = JOB_PREFIX .. id
  local f = redis.call('HMGET', jobkey, 'state', 'task', 'priority')
  if f[1] == source and redis.call('ZREM', index, id) == 1 then
    redis.call('HSET', jobkey, 'attempts', 0, 'deaths', 0)
    redis.call('HDEL', jobkey, 'finished_at')
    make_queued(jobkey, id, f[3] or '0', '0')
    emit('enqueued', id, f[2], {retried_from = source})
    moved[#moved + 1] = id
  end
end
return moved
