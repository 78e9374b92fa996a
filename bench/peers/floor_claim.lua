-- Redis floor, claim: pop up to ARGV[2] ready jobs into the active set with a lease.
-- KEYS[1] queued zset (id -> sequence)
-- KEYS[2] active zset (id -> lease deadline ms, Redis clock)
-- ARGV[1] job key prefix ("floor:job:")
-- ARGV[2] batch size
-- ARGV[3] lease ms
-- Returns {id1, params1, id2, params2, ...}
local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[2]))
if #popped == 0 then return {} end
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
local out = {}
for i = 1, #popped, 2 do
  local id = popped[i]
  redis.call('ZADD', KEYS[2], deadline, id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', ARGV[1] .. id, 'params')
end
return out
