-- claim: queued -> active, with a lease; due delayed -> queued first.
-- KEYS: the queue key vector (see _lib.lua).
-- ARGV[1] job key prefix, ARGV[2] resource-wait prefix, ARGV[3] owner id,
-- ARGV[4] max jobs to claim, ARGV[5] lease ms, ARGV[6] max delayed jobs to promote.
-- Returns {ms until the next delayed job is due (-1: none), then 9 fields per job:
--   id, task, params, attempts, max_retries, timeout, resource_id, lease token, deaths}.
-- A job whose resource is held waits in the resource's list (state stays queued)
-- and is handed on when the holder finishes: never failed, never polled.
-- A job id in the queue without a job hash, or whose hash has text where a number
-- belongs, is recorded as failed (malformed) and never becomes active.
local owner, want, lease_ms = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()

local function fail_malformed(jobkey, id, task, from, reason)
  redis.call('HSET', jobkey, 'id', id, 'task', task, 'state', 'failed', 'error', reason,
             'finished_at', now)
  redis.call('ZADD', K.failed, now, id)
  redis.call('HINCRBY', K.stats, 'failures', 1)
  emit('failed', id, task, {error = reason})
  redis.call('PUBLISH', jobkey .. ':done', cjson.encode({state = 'failed', error = reason}))
end

-- A client writing the hash by hand (README) may put text where a number belongs.
-- Caught here, before it could stop a later script half-way (Redis does not roll
-- back what a failing script already wrote: popped jobs would be orphaned) or break
-- the worker's parsing of this reply. Integers as HINCRBY takes them; the timeout
-- as a decimal. Returns the reason, or nil when the fields are sound.
-- Per claimed job, so no tables are built here: this is the hot path.
local function bad_int(v)
  return v and not (#v <= 18 and string.find(v, '^%-?%d+$'))
end
local function bad_number(f)
  local name, v
  if bad_int(f[3]) then name, v = 'attempts', f[3]
  elseif bad_int(f[4]) then name, v = 'max_retries', f[4]
  elseif bad_int(f[7]) then name, v = 'deaths', f[7]
  elseif bad_int(f[8]) then name, v = 'priority', f[8]
  elseif f[5] and not (string.find(f[5], '^[%d%.eE%+%-]+$') and tonumber(f[5])) then
    name, v = 'timeout', f[5]
  else
    return nil
  end
  return 'malformed job: ' .. name .. ' is not a number ("' .. string.sub(v, 1, 100) .. '")'
end

-- The head of delayed says whether anything is due; it is read again at the end only
-- when jobs were promoted (claiming adds nothing to delayed).
local delayed_head = redis.call('ZRANGE', K.delayed, 0, 0, 'WITHSCORES')
if #delayed_head > 0 and tonumber(delayed_head[2]) <= now then
  local due = redis.call('ZRANGEBYSCORE', K.delayed, '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
  for _, id in ipairs(due) do
    redis.call('ZREM', K.delayed, id)
    local jobkey = JOB_PREFIX .. id
    local f = redis.call('HMGET', jobkey, 'priority', 'task', 'front')
    make_queued(jobkey, id, f[1] or '0', f[3])
  end
  delayed_head = redis.call('ZRANGE', K.delayed, 0, 0, 'WITHSCORES')
end

local out = {-1}
local claimed = 0
local leases = {}        -- score/member pairs for active, added in one call
local paused = redis.call('EXISTS', K.paused) == 1
local emptied = false    -- a pop got fewer than it asked for: nothing is left ready
if not paused then
  while claimed < want and not emptied do
    local asked = want - claimed
    local popped = redis.call('ZPOPMIN', K.queued, asked)
    emptied = #popped < 2 * asked
    for i = 1, #popped, 2 do
      local id, score = popped[i], popped[i + 1]
      local jobkey = JOB_PREFIX .. id
      local f = redis.call('HMGET', jobkey, 'task', 'params', 'attempts', 'max_retries',
                           'timeout', 'resource_id', 'deaths', 'priority', 'backoff_type')
      local task, resource_id = f[1], f[6]
      local malformed = task and bad_number(f)
      if not task then
        fail_malformed(jobkey, id, '?', nil, 'malformed job: no job hash for this id')
      elseif malformed then
        fail_malformed(jobkey, id, task, 'queued', malformed)
      elseif resource_id and resource_id ~= '' and
             redis.call('HSETNX', K.resources, resource_id, id) == 0 and
             redis.call('HGET', K.resources, resource_id) ~= id then
        redis.call('RPUSH', RWAIT_PREFIX .. resource_id, id)
        redis.call('ZADD', K.blocked, score, id)
      else
        local attempts = (tonumber(f[3]) or 0) + 1
        local token = owner .. ':' .. attempts
        local max_retries, timeout
        if not f[4] and not f[5] and not f[9] then
          -- The common case (everything left to the task): one HSET, no field list.
          local d = task_defaults(task)
          max_retries, timeout = d.retries, d.timeout
          redis.call('HSET', jobkey, 'state', 'active', 'owner', owner, 'lease', token,
                     'started_at', now, 'attempts', attempts, 'max_retries', max_retries,
                     'backoff_type', d.backoff_type, 'backoff_ms', d.backoff_ms,
                     'backoff_max_ms', d.backoff_max_ms, 'timeout', timeout)
        else
          local fields = {'state', 'active', 'owner', owner, 'lease', token, 'started_at', now,
                          'attempts', attempts}
          max_retries, timeout = resolve_defaults(fields, task, f[4] or '-1', f[5] or '-1',
                                                  f[9])
          redis.call('HSET', jobkey, unpack(fields))
        end
        leases[#leases + 1] = now + lease_ms
        leases[#leases + 1] = id
        emit('active', id, task, nil)
        out[#out + 1] = id
        out[#out + 1] = task
        out[#out + 1] = f[2] or ''
        out[#out + 1] = attempts
        out[#out + 1] = max_retries
        out[#out + 1] = timeout
        out[#out + 1] = resource_id or ''
        out[#out + 1] = token
        out[#out + 1] = f[7] or '0'
        claimed = claimed + 1
      end
    end
  end
end

call_many('ZADD', K.active, leases)

-- Keep the wake-up chain: while jobs remain, one token waits for the next idle
-- worker. A paused queue keeps no token, so its workers stay blocked (resume
-- pushes one).
if paused or emptied or redis.call('ZCARD', K.queued) == 0 then
  redis.call('DEL', K.notify)
elseif redis.call('LLEN', K.notify) == 0 then
  redis.call('RPUSH', K.notify, '1')
end

if #delayed_head > 0 then out[1] = math.max(tonumber(delayed_head[2]) - now, 0) end
return out
