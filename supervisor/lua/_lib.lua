-- Shared library, prepended to every transition script by scripts.py.
--
-- Every script receives the same queue key vector in KEYS, so each declares all
-- the fixed keys it may touch (Redis Cluster: all carry the queue's hash tag):
--   KEYS[1]  queued      ZSET  ready jobs, score = priority band + sequence
--   KEYS[2]  delayed     ZSET  job id -> run-at ms
--   KEYS[3]  active      ZSET  job id -> lease deadline ms
--   KEYS[4]  completed   ZSET  job id -> finish ms
--   KEYS[5]  failed      ZSET  job id -> failure ms
--   KEYS[6]  stalled     ZSET  job id -> stall ms
--   KEYS[7]  cancelled   ZSET  job id -> cancel ms
--   KEYS[8]  blocked     ZSET  queued jobs waiting for their resource
--   KEYS[9]  notify      LIST  wake-up tokens for idle workers
--   KEYS[10] paused      STRING present while the queue is paused
--   KEYS[11] resources   HASH  resource id -> job id holding it
--   KEYS[12] stats       HASH  counters: processed, failures
--   KEYS[13] seq         STRING FIFO sequence
--   KEYS[14] events      pub/sub channel name of the queue's events
--   KEYS[15] tasks       HASH  task name -> JSON defaults registered by workers
-- ARGV[1] is always the job key prefix "<prefix>:{<queue>}:job:" and ARGV[2] the
-- resource-wait list prefix "<prefix>:{<queue>}:rwait:". Job keys are built from
-- them; they share the queue's hash tag, so a script still touches one slot.

local K = {
  queued = KEYS[1], delayed = KEYS[2], active = KEYS[3], completed = KEYS[4],
  failed = KEYS[5], stalled = KEYS[6], cancelled = KEYS[7], blocked = KEYS[8],
  notify = KEYS[9], paused = KEYS[10], resources = KEYS[11], stats = KEYS[12],
  seq = KEYS[13], events = KEYS[14], tasks = KEYS[15],
}
local JOB_PREFIX = ARGV[1]
local RWAIT_PREFIX = ARGV[2]

-- Priority bands: priority p in [-100, 100] maps to band 100 - p, so higher
-- priority sorts first. Inside a band, FIFO by sequence; "front" jobs sort
-- before every normal job of their band (LIFO among themselves).
local BAND = 10000000000000      -- 1e13: room for 5e12 sequence numbers per band
local BAND_MIDDLE = 5000000000000

-- Variadic commands over long lists, in chunks: Lua's unpack has a stack limit.
local UNPACK_CHUNK = 1000
local function call_many(cmd, key, items)
  for i = 1, #items, UNPACK_CHUNK do
    redis.call(cmd, key, unpack(items, i, math.min(i + UNPACK_CHUNK - 1, #items)))
  end
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- `seq` may be given (enqueue reserves a block of sequence numbers at once).
local function queued_score(priority, front, seq)
  seq = seq or redis.call('INCR', K.seq)
  -- A hand-written priority that is not a number sorts as 0 (claim.lua then fails the
  -- job as malformed) rather than stopping the calling script half-way.
  local base = (100 - (tonumber(priority) or 0)) * BAND + BAND_MIDDLE
  if front == '1' then return base - seq end
  return base + seq
end

local function state_index(state)
  if state == 'queued' then return K.queued end
  return K[state]
end

-- Events cost nothing when nobody listens: subscribers are counted once per call.
local events_listened = nil
local function emit(event, id, task, extra)
  if events_listened == nil then
    events_listened = redis.call('PUBSUB', 'NUMSUB', K.events)[2] > 0
  end
  if not events_listened then return end
  local msg = {event = event, id = id, task = task}
  if extra then for k, v in pairs(extra) do msg[k] = v end end
  redis.call('PUBLISH', K.events, cjson.encode(msg))
end

-- History is a JSON array kept as text in the job hash; entries are appended
-- without decoding the whole array.
local function add_history(jobkey, entry)
  local encoded = cjson.encode(entry)
  local history = redis.call('HGET', jobkey, 'history')
  if not history or history == '' or history == '[]' then
    history = '[' .. encoded .. ']'
  else
    history = string.sub(history, 1, -2) .. ',' .. encoded .. ']'
  end
  redis.call('HSET', jobkey, 'history', history)
end

-- A producer need not import task code, so a job may leave retries, backoff and
-- timeout to the task's defaults ('-1' / ''). They are fixed at the first claim,
-- from the defaults the workers registered, so sweeps and reaps (run by masters,
-- which never import task code) find the job self-describing. A task no worker
-- registered gets no retries and no timeout.
-- The task's defaults as job field values, read and resolved once per task and call.
local defaults_cache = {}
local function task_defaults(task)
  local d = defaults_cache[task]
  if d == nil then
    local raw = redis.call('HGET', K.tasks, task)
    local t = raw and cjson.decode(raw) or {}
    d = {retries = tostring(t.retries or 0), timeout = tostring(t.timeout or 0),
         backoff_type = t.backoff_type or 'fixed', backoff_ms = t.backoff_ms or 0,
         backoff_max_ms = t.backoff_max_ms or 0}
    defaults_cache[task] = d
  end
  return d
end

-- Appends the resolved fields to `fields` (for the caller's one HSET) and returns
-- the effective max_retries and timeout.
local function resolve_defaults(fields, task, max_retries, timeout, backoff_type)
  if max_retries ~= '-1' and timeout ~= '-1' then return max_retries, timeout end
  local d = task_defaults(task)
  if max_retries == '-1' then
    max_retries = d.retries
    fields[#fields + 1] = 'max_retries'
    fields[#fields + 1] = max_retries
    -- A job that set its own backoff (backoff_type not empty) keeps it.
    if (backoff_type or '') == '' then
      fields[#fields + 1] = 'backoff_type'
      fields[#fields + 1] = d.backoff_type
      fields[#fields + 1] = 'backoff_ms'
      fields[#fields + 1] = d.backoff_ms
      fields[#fields + 1] = 'backoff_max_ms'
      fields[#fields + 1] = d.backoff_max_ms
    end
  end
  if timeout == '-1' then
    timeout = d.timeout
    fields[#fields + 1] = 'timeout'
    fields[#fields + 1] = timeout
  end
  return max_retries, timeout
end

-- Put a job (already removed from every index) into the ready set and wake a worker.
local function make_queued(jobkey, id, priority, front)
  redis.call('HSET', jobkey, 'state', 'queued')
  redis.call('ZADD', K.queued, queued_score(priority, front), id)
  if redis.call('LLEN', K.notify) == 0 then redis.call('RPUSH', K.notify, '1') end
end

-- Put a job into the delayed set. When it is due before every other delayed job,
-- wake one idle worker: it was blocking with a timeout set for the old head (or
-- the idle maximum) and now shortens it to this job's time.
local function make_delayed(id, run_at)
  redis.call('ZADD', K.delayed, run_at, id)
  if redis.call('ZRANGE', K.delayed, 0, 0)[1] == id and redis.call('LLEN', K.notify) == 0 then
    redis.call('RPUSH', K.notify, '1')
  end
end

-- Free the resource a finishing job held and hand it to the next waiter.
local function release_resource(resource_id, id)
  if not resource_id or resource_id == '' then return end
  if redis.call('HGET', K.resources, resource_id) ~= id then return end
  redis.call('HDEL', K.resources, resource_id)
  local waitkey = RWAIT_PREFIX .. resource_id
  while true do
    local next_id = redis.call('LPOP', waitkey)
    if not next_id then return end
    if redis.call('ZREM', K.blocked, next_id) == 1 then
      local nextkey = JOB_PREFIX .. next_id
      local priority = redis.call('HGET', nextkey, 'priority') or '0'
      -- It waited its turn: it goes to the front of its band.
      make_queued(nextkey, next_id, priority, '1')
      return
    end
  end
end

-- Retry delay in ms for the given attempt (1-based), from the job's backoff fields.
local function backoff_ms(jobkey, attempt)
  local f = redis.call('HMGET', jobkey, 'backoff_type', 'backoff_ms', 'backoff_max_ms')
  local delay = tonumber(f[2]) or 0
  if f[1] == 'exponential' then
    delay = delay * math.pow(2, math.max(attempt - 1, 0))
  end
  local cap = tonumber(f[3]) or 0
  if cap > 0 and delay > cap then delay = cap end
  return math.floor(delay)
end

-- An active job has ended without success. It is retried (delayed by its backoff)
-- when `allow_retry` and attempts remain, else it ends in failed. The job must
-- already be removed from `active`. Returns 'delayed' or 'failed'.
local function retry_or_fail(jobkey, id, now, reason, tb, allow_retry)
  local f = redis.call('HMGET', jobkey, 'task', 'attempts', 'max_retries', 'resource_id')
  local task, attempts, max_retries = f[1] or '?', tonumber(f[2]) or 0, tonumber(f[3]) or 0
  release_resource(f[4], id)
  redis.call('HDEL', jobkey, 'owner', 'lease')
  add_history(jobkey, {attempt = attempts, at = now, error = reason})
  redis.call('HSET', jobkey, 'error', reason, 'traceback', tb or '')
  if allow_retry and attempts <= max_retries then
    local run_at = now + backoff_ms(jobkey, attempts)
    redis.call('HSET', jobkey, 'state', 'delayed', 'run_at', run_at)
    make_delayed(id, run_at)
    emit('failed', id, task, {error = reason, retry_at = run_at})
    return 'delayed'
  end
  redis.call('HSET', jobkey, 'state', 'failed', 'finished_at', now)
  redis.call('HINCRBY', jobkey, 'failures', 1)
  redis.call('ZADD', K.failed, now, id)
  redis.call('HINCRBY', K.stats, 'failures', 1)
  emit('failed', id, task, {error = reason})
  redis.call('PUBLISH', jobkey .. ':done', cjson.encode({state = 'failed', error = reason}))
  return 'failed'
end

-- The owner of an active job died or lost its lease: count the death, then
-- retry or fail it. Past `max_deaths` the job is a poison pill and fails.
-- A job cut short by a shutdown the supervisor ordered (drain deadline, fast stop)
-- is recovered without counting a death: `count_death` false.
local function recover_dead(jobkey, id, now, reason, max_deaths, count_death)
  redis.call('ZREM', K.active, id)
  if count_death == false then
    return retry_or_fail(jobkey, id, now, reason, '', true)
  end
  local deaths = redis.call('HINCRBY', jobkey, 'deaths', 1)
  if deaths >= max_deaths then
    return retry_or_fail(jobkey, id, now,
      'killed its worker ' .. deaths .. ' times; last: ' .. reason, '', false)
  end
  return retry_or_fail(jobkey, id, now, reason, '', true)
end
