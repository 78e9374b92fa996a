-- release: active -> queued. A worker gives a job back: prefetched-but-unstarted
-- jobs at shutdown (the attempt is not counted), or a cancel by the task itself
-- (Thoonk's cancel: the cancel count grows).
-- KEYS: the queue key vector (see _lib.lua).
-- ARGV[1] job key prefix, ARGV[2] resource-wait prefix, ARGV[3] mode ('giveback'
-- or 'cancel'), then pairs: id, lease token. Returns the number released.
local mode = ARGV[3]
local released = 0
for i = 4, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local jobkey = JOB_PREFIX .. id
  local f = redis.call('HMGET', jobkey, 'state', 'lease', 'task', 'resource_id', 'priority')
  if f[1] == 'active' and f[2] == token then
    redis.call('ZREM', K.active, id)
    redis.call('HDEL', jobkey, 'owner', 'lease')
    if mode == 'cancel' then
      redis.call('HINCRBY', jobkey, 'cancels', 1)
    else
      redis.call('HINCRBY', jobkey, 'attempts', -1)
    end
    make_queued(jobkey, id, f[5] or '0', '1')
    -- Handed on after the job is back in the queue: the waiter goes to the front
    -- after it (front jobs are LIFO), so it runs first, as it waited longer.
    release_resource(f[4], id)
    emit('released', id, f[3], {mode = mode})
    released = released + 1
  end
end
return released
