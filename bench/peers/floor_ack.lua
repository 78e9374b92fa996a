-- Redis floor, ack: a batch of finished jobs leaves active for completed.
-- KEYS[1] active zset
-- KEYS[2] completed zset (id -> finish ms)
-- KEYS[3] verification counter (INCRBY the batch size)
-- ARGV[1..n] job ids
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], now, ARGV[i])
  end
end
return redis.call('INCRBY', KEYS[3], #ARGV)
