-- extend: push the lease deadline of active jobs held by one owner.
-- KEYS: the queue key vector (see _lib.lua).
-- ARGV[1] job key prefix, ARGV[2] resource-wait prefix, ARGV[3] owner id,
-- ARGV[4] lease ms, then job ids.
-- Returns the ids this owner no longer holds (timed out, swept or reaped).
local owner, lease_ms = ARGV[3], tonumber(ARGV[4])
local deadline = now_ms() + lease_ms
local lost = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local f = redis.call('HMGET', JOB_PREFIX .. id, 'state', 'owner')
  if f[1] == 'active' and f[2] == owner then
    redis.call('ZADD', K.active, 'XX', deadline, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
