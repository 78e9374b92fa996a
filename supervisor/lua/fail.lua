-- fail: active -> delayed (retry with backoff) or failed.
-- KEYS: the queue key vector (see _lib.lua).
-- ARGV[1] job key prefix, ARGV[2] resource-wait prefix, ARGV[3] n, then n groups
-- of 5: id, lease token, error (one line), traceback, allow_retry ('1' or '0').
-- An outcome whose token no longer matches is ignored.
-- Returns, per job, 'delayed', 'failed' or 'stale'.
local n = tonumber(ARGV[3])
local now = now_ms()
local out = {}
for i = 0, n - 1 do
  local b = 3 + i * 5
  local id, token = ARGV[b + 1], ARGV[b + 2]
  local jobkey = JOB_PREFIX .. id
  local f = redis.call('HMGET', jobkey, 'state', 'lease')
  if f[1] == 'active' and f[2] == token then
    redis.call('ZREM', K.active, id)
    out[#out + 1] = retry_or_fail(jobkey, id, now, ARGV[b + 3], ARGV[b + 4], ARGV[b + 5] == '1')
  else
    out[#out + 1] = 'stale'
  end
end
return out
