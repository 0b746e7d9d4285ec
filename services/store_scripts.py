"""The store's Lua scripts. Each touches only keys passed in KEYS, and all of them of one slot: one job's keys
(services.store_keys: they share the job id as hash tag), or the one Idempotency-Key record; so they run
unchanged on a single Redis and on a Redis Cluster."""

from __future__ import annotations

# Wake long-polling readers (GET ?wait=): one entry in the job's `done` stream, expiring with the job.
_SIGNAL = """
local function signal_done(job, done)
  redis.call('XADD', done, 'MAXLEN', '1', '*', 'status', redis.call('HGET', job, 'status'))
  local left = redis.call('PTTL', job)
  if left > 0 then redis.call('PEXPIRE', done, left)
  else redis.call('EXPIRE', done, tonumber(redis.call('HGET', job, 'ttl')) or 86400) end
end
"""

UPDATE = _SIGNAL + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'queued' and st ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if KEYS[3] then signal_done(KEYS[1], KEYS[3]) end
return 1
"""
"""Set fields of a queued/running job, unless it is gone (or, with ARGV[1]=='1', cancelled); with a KEYS[3],
the update finishes the job: signal it done. KEYS: job, cancel[, done]."""

BEGIN = _SIGNAL + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone', 0} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'cancelled', 0} end
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'queued' and st ~= 'running' then return {st, 0} end
local n = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if st == 'running' and tonumber(redis.call('HGET', KEYS[1], 'lease') or '0') > tonumber(ARGV[6]) then
  return {'duplicate', n}
end
if n >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'error', ARGV[3], 'finished_at', ARGV[2], 'status', 'failed')
  signal_done(KEYS[1], KEYS[3])
  return {'exhausted', n}
end
n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'started_at', ARGV[2], 'progress', ARGV[4], 'status', 'running', 'lease', ARGV[5])
return {'running', n, unpack(redis.call('HMGET', KEYS[1], 'spec', 'ttl', 'max_bytes'))}
"""
"""One delivery of a job: count it, give up past max attempts, else mark it running and hand back what the
worker needs (spec, TTL, byte cap), so that a delivery costs one round trip. A job running under a lease that has
not run out (ARGV[6]: now) is another worker's: this delivery is a 'duplicate' (a broker's redelivery racing the
reaper's requeue) and changes nothing. KEYS: job, cancel, done."""

RENEW = """
local st, n = unpack(redis.call('HMGET', KEYS[1], 'status', 'attempts'))
if st ~= 'running' or n ~= ARGV[1] or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'lease', ARGV[2])
return 1
"""
"""Renew the lease of delivery ARGV[1] (its attempt number) to ARGV[2] (epoch seconds): only while the job is
running that delivery (a reclaimed or redelivered job is no longer ours: 0). KEYS: job, cancel."""

CANCEL = _SIGNAL + """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'queued' and st ~= 'running' then return 0 end
redis.call('HDEL', KEYS[1], 'spec', 'lease')
redis.call('HSET', KEYS[1], 'finished_at', ARGV[1], 'progress', ARGV[2], 'status', 'cancelled')
redis.call('SET', KEYS[3], 'requested', 'EX', ARGV[3])
signal_done(KEYS[1], KEYS[2])
return 1
"""
"""Cancel a queued or running job: status 'cancelled' (its record stays for its TTL, without its spec), the
cancel flag raised for its worker, and its long polls woken. KEYS: job, done, cancel."""

RECLAIM = _SIGNAL + """
local st, lease, n = unpack(redis.call('HMGET', KEYS[1], 'status', 'lease', 'attempts'))
if st ~= 'running' or not lease or tonumber(lease) >= tonumber(ARGV[1]) then return 'alive' end
if tonumber(n or '0') >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'error', ARGV[3], 'finished_at', ARGV[4], 'status', 'failed')
  redis.call('HDEL', KEYS[1], 'lease')
  signal_done(KEYS[1], KEYS[3])
  return 'failed'
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'progress', ARGV[5])
redis.call('HDEL', KEYS[1], 'lease')
return 'requeued'
"""
"""Reclaim a running job whose lease ran out before ARGV[1] (epoch seconds): its worker, its message or Redis
went away. Under ARGV[2] attempts it goes back to 'queued' (the caller sends it again); at the cap it fails
with the reason ARGV[3]. Returns 'requeued', 'failed', or 'alive' (not running, or the lease was renewed).
KEYS: job, cancel, done."""

FINISH = _SIGNAL + """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'running' or redis.call('EXISTS', KEYS[2]) == 1 then
  for i = 4, #KEYS, 1000 do redis.call('UNLINK', unpack(KEYS, i, math.min(i + 999, #KEYS))) end
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('HSET', KEYS[1], 'status', 'succeeded')
redis.call('EXPIRE', KEYS[1], ARGV[1])
signal_done(KEYS[1], KEYS[3])
return redis.call('HGET', KEYS[1], 'idem') or 1
"""
"""Publish a finished job, once its tensors are written (under its delivery's keys): unless the job is still running
and not cancelled, delete those tensor keys (KEYS[4..]) and return 0; else set the result fields, then the
status, give the job the TTL ARGV[1], signal it done and return its Idempotency-Key record's name (or 1): the
caller extends that record, a key of another slot, by itself. KEYS: job, cancel, done, the keys written."""

NEW_JOB = """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
"""
"""Create a job's hash (fields ARGV[2..]) with its TTL ARGV[1], in one step. KEYS: job."""

CLAIM = """
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""
"""Claim an Idempotency-Key for 'job_id spec_digest' (ARGV[1]) with TTL ARGV[2], unless it names a job already:
then return what it holds (SET NX GET, which needs Redis 7). KEYS: the key's record."""

IDEM_RELEASE = """
local cur = redis.call('GET', KEYS[1])
if not cur or string.sub(cur, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
"""
"""While an Idempotency-Key's record still names job ARGV[1]: delete it (ARGV[2] == '') or give it the TTL
ARGV[2]; a record another request has claimed since is left alone. KEYS: the key's record."""

FETCH = """
local st, primary, data = unpack(redis.call('HMGET', KEYS[1], 'status', 'engine', 'data'))
if not st then return {} end
if st ~= 'succeeded' or not primary or not data then return {st} end
local engine = ARGV[1] ~= '' and ARGV[1] or primary
if data ~= ARGV[3] then return {st, engine, data} end
local entry = redis.call('HGET', KEYS[2], engine .. '/' .. ARGV[2])
if not entry or string.sub(entry, 1, 1) == '!' then return {st, engine, data, entry or ''} end
local offset, nbytes = string.match(entry, '^(%S+) (%d+) ')
if offset == '-' then return {st, engine, data, entry} end
if tonumber(nbytes) == 0 then return {st, engine, data, entry, ''} end
return {st, engine, data, entry, redis.call('GETRANGE', KEYS[3], tonumber(offset), tonumber(offset) + tonumber(nbytes) - 1)}
"""
"""One tensor of a finished job in one round trip: {} when the job is gone, {status} when it is not succeeded,
{status, engine, data attempt} when the published delivery is not ARGV[3] (the caller's guess, whose index and
pack are KEYS[2] and KEYS[3]: it asks again with that delivery's keys), else {status, engine, data attempt,
index entry ('' if none), bytes (when packed)}. A tensor with its own key (over PACK_BYTES) is then read with a
plain GET: copying megabytes through Lua costs more than a round trip. ARGV: engine ('' for the job's primary
one), 'field/name', attempt. KEYS: job, index, packed."""

FETCH_MANY = """
local out = {}
for _, k in ipairs(ARGV) do
  local entry = redis.call('HGET', KEYS[1], k)
  if not entry or string.sub(entry, 1, 1) == '!' then
    out[#out + 1] = false
    out[#out + 1] = false
  else
    out[#out + 1] = entry
    local offset, nbytes = string.match(entry, '^(%S+) (%d+) ')
    if offset == '-' then out[#out + 1] = false
    elseif tonumber(nbytes) == 0 then out[#out + 1] = ''
    else out[#out + 1] = redis.call('GETRANGE', KEYS[2], tonumber(offset), tonumber(offset) + tonumber(nbytes) - 1) end
  end
end
return out
"""
"""Many tensors of one delivery in one round trip: for each array key (ARGV) its index entry and, when packed,
its bytes (false for a missing or not-kept tensor; an entry with no bytes has its own key). KEYS: index, packed."""

SCRIPTS = {"update": UPDATE, "begin": BEGIN, "renew": RENEW, "cancel": CANCEL, "reclaim": RECLAIM, "new_job": NEW_JOB,
           "claim": CLAIM, "idem_release": IDEM_RELEASE, "fetch": FETCH, "fetch_many": FETCH_MANY}
"""What a store registers (and runs by EVALSHA). FINISH is sent with EVAL, last in the pipeline of a job's writes."""
