-- complete: active -> completed (or deleted when remove_on_complete).
-- KEYS: the queue key vector (see _lib.lua).
-- ARGV[1] job key prefix, ARGV[2] resource-wait prefix,
-- ARGV[3] completed jobs to keep (count, -1 = no cap), ARGV[4] completed retention ms
-- (-1 = forever), ARGV[5] n, then n triples: id, lease token, result (JSON text).
-- An outcome whose token no longer matches (the job timed out, was swept or
-- reaped meanwhile) is ignored. Returns the number of jobs completed.
local keep, retention, n = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local done_ids = {}      -- ids leaving active
local kept = {}          -- score/member pairs for completed

-- Outcomes are published only on the channels someone waits on (Job.result()),
-- asked once for the whole batch instead of a PUBLISH per job.
local channels = {}
for i = 0, n - 1 do channels[i + 1] = JOB_PREFIX .. ARGV[6 + i * 3] .. ':done' end
local waited = {}
for i = 1, #channels, UNPACK_CHUNK do
  local counts = redis.call('PUBSUB', 'NUMSUB',
                            unpack(channels, i, math.min(i + UNPACK_CHUNK - 1, #channels)))
  for j = 1, #counts, 2 do
    if counts[j + 1] > 0 then waited[counts[j]] = true end
  end
end

for i = 0, n - 1 do
  local id, token, result = ARGV[6 + i * 3], ARGV[7 + i * 3], ARGV[8 + i * 3]
  local jobkey, channel = JOB_PREFIX .. id, channels[i + 1]
  local f = redis.call('HMGET', jobkey, 'state', 'lease', 'task', 'resource_id',
                       'remove_on_complete')
  if f[1] == 'active' and f[2] == token then
    done_ids[#done_ids + 1] = id
    release_resource(f[4], id)
    if waited[channel] then
      redis.call('PUBLISH', channel, '{"state":"completed","result":' .. result .. '}')
    end
    emit('completed', id, f[3], nil)
    if f[5] == '1' then
      redis.call('DEL', jobkey, jobkey .. ':log')
    else
      redis.call('HSET', jobkey, 'state', 'completed', 'result', result, 'finished_at', now)
      redis.call('HDEL', jobkey, 'owner', 'lease')
      kept[#kept + 1] = now
      kept[#kept + 1] = id
    end
  end
end
-- One variadic call each, not one per job: this is the hot path.
if #done_ids > 0 then
  call_many('ZREM', K.active, done_ids)
  redis.call('HINCRBY', K.stats, 'processed', #done_ids)
end
call_many('ZADD', K.completed, kept)

-- Retention, bounded per call so one ack never does unbounded work.
local TRIM_BATCH = 200
local function drop(ids)
  if #ids == 0 then return end
  local keys = {}
  for _, id in ipairs(ids) do
    keys[#keys + 1] = JOB_PREFIX .. id
    keys[#keys + 1] = JOB_PREFIX .. id .. ':log'
  end
  redis.call('DEL', unpack(keys))  -- at most 2 x TRIM_BATCH keys
  redis.call('ZREM', K.completed, unpack(ids))
end
if retention >= 0 then
  drop(redis.call('ZRANGEBYSCORE', K.completed, '-inf', now - retention, 'LIMIT', 0, TRIM_BATCH))
end
if keep >= 0 then
  local excess = redis.call('ZCARD', K.completed) - keep
  if excess > 0 then
    drop(redis.call('ZRANGE', K.completed, 0, math.min(excess, TRIM_BATCH) - 1))
  end
end
return #done_ids
