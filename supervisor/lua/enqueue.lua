-- enqueue: new jobs -> queued (or delayed when run_at is in the future).
-- KEYS: the queue key vector (see _lib.lua).
-- ARGV[1] job key prefix, ARGV[2] resource-wait prefix,
-- ARGV[3] number of jobs n, then n groups of 5 fields:
--   id, task, params (JSON text), priority (int, -100..100),
--   options: '' for none, else a JSON object with any of
--     run_at_ms (absolute, Redis clock), delay_ms (from Redis's now), max_retries,
--     backoff_type, backoff_ms, backoff_max_ms, timeout (s), resource_id,
--     remove_on_complete (1), front (1).
-- Only fields that differ from their defaults are stored (README, wire format):
-- max_retries and timeout absent mean "the task's default", fixed at first claim.
-- Unique ids: a job whose id is queued, delayed, active or stalled is left as it
-- is. Returns, per job, 'new' (now queued), 'new-delayed' (now delayed) or the
-- existing job's state.
local FIELDS = 5
local OPTION_FIELDS = {'max_retries', 'backoff_type', 'backoff_ms', 'backoff_max_ms',
                       'timeout', 'resource_id', 'remove_on_complete', 'front'}
local n = tonumber(ARGV[3])
local now = now_ms()
local seq = redis.call('INCRBY', K.seq, n) - n
local out = {}
local ready = {}         -- score/member pairs for queued, added in one call
for i = 0, n - 1 do
  local b = 3 + i * FIELDS
  local id, task, params, priority = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local jobkey = JOB_PREFIX .. id
  local state = redis.call('HGET', jobkey, 'state')
  if state == 'queued' or state == 'delayed' or state == 'active' or state == 'stalled' then
    out[#out + 1] = state
  else
    if state then
      -- A finished job with this id: it may be queued again; the old run is dropped.
      redis.call('ZREM', state_index(state) or K.completed, id)
      redis.call('DEL', jobkey, jobkey .. ':log')
    end
    local fields = {'id', id, 'task', task, 'params', params, 'priority', priority,
                    'created_at', now}
    local run_at, front = 0, '0'
    if ARGV[b + 5] ~= '' then
      local o = cjson.decode(ARGV[b + 5])
      if o.delay_ms and o.delay_ms > 0 then run_at = now + o.delay_ms
      elseif o.run_at_ms then run_at = o.run_at_ms end
      if o.front then front = '1' end
      for _, name in ipairs(OPTION_FIELDS) do
        if o[name] ~= nil then
          fields[#fields + 1] = name
          fields[#fields + 1] = tostring(o[name])
        end
      end
      if run_at > 0 then
        fields[#fields + 1] = 'run_at'
        fields[#fields + 1] = run_at
      end
    end
    fields[#fields + 1] = 'state'
    seq = seq + 1
    if run_at > now then
      fields[#fields + 1] = 'delayed'
      redis.call('HSET', jobkey, unpack(fields))
      make_delayed(id, run_at)
      out[#out + 1] = 'new-delayed'
    else
      fields[#fields + 1] = 'queued'
      redis.call('HSET', jobkey, unpack(fields))
      ready[#ready + 1] = queued_score(priority, front, seq)
      ready[#ready + 1] = id
      out[#out + 1] = 'new'
    end
    emit('enqueued', id, task, nil)
  end
end
call_many('ZADD', K.queued, ready)
if #ready > 0 and redis.call('LLEN', K.notify) == 0 then
  redis.call('RPUSH', K.notify, '1')
end
return out
