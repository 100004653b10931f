-- storepulse: apply one batch of one partition atomically, together with its offset.
--
-- Every key this script touches starts with ARGV[1], a prefix carrying the hash tag
-- {topic/partition}, so all of them live in one Redis Cluster slot. Key and field names come
-- from the header streams/store/keys.py renders in front of this text (K_*, M_*, T_*, B_*,
-- S_*, R_*): the script spells none itself.
--
-- ARGV
--   1  prefix              "sp:{<topic>/<partition>}:"
--   2  expected offset     the last applied offset the worker assumed (-1: none yet)
--   3  new offset          offset of the last message of the batch
--   4  new fingerprint     fingerprint of that message (topic recreation check)
--   5  watermark (ms)      max accepted event time on the partition after this batch
--   6  high-water mark     of the fetched data (for lag), -1 when unknown
--   7  now (ms)            wall clock of the worker, for the "applied at" time
--   8  bucket size (ms)
--   9  session horizon     sessions and orders whose newest event time is below it are evicted
--  10  bucket horizon      bucket ids (epoch seconds) below it are deleted (retention)
--  11  stage names         comma separated, funnel order
--  12  n                   number of (field, increment) pairs for the totals hash that follow
--  ..  pairs               rejected counts, latency histogram buckets, ...
--  then one JSON array (cjson) of RECORD_WIDTH strings per accepted event, flattened, in the
--      slots of keys.EventRecord (offsets R_EVENT_ID .. R_CURRENCY)
--  (one argument instead of 11 per event: redis-py packs each argument in Python, ~30 us/event)
--
-- Returns {status, applied offset, accepted, duplicates}; status "conflict" when the stored
-- offset is not the expected one (another worker applied meanwhile): nothing was written.

local pfx = ARGV[1]
local meta = pfx .. K_META
local stored = tonumber(redis.call('HGET', meta, M_OFFSET) or '-1')
if stored ~= tonumber(ARGV[2]) then
  return {'conflict', stored, 0, 0}
end

local tot = pfx .. K_TOTALS
local bucket_ms = tonumber(ARGV[8])
local stages = {}
for name in string.gmatch(ARGV[11], '[^,]+') do
  stages[#stages + 1] = name
end
local purchase_stage = #stages - 1

local n_pairs = tonumber(ARGV[12])
local i = 13
for _ = 1, n_pairs do
  redis.call('HINCRBY', tot, ARGV[i], ARGV[i + 1])
  i = i + 2
end

local touched_buckets = {}
local function bucket_key(ts)
  local b = math.floor(ts / bucket_ms) * (bucket_ms / 1000)
  if not touched_buckets[b] then
    touched_buckets[b] = true
  end
  return pfx .. K_BUCKET .. string.format('%d', b)
end

-- Count (or uncount, by = -1) one session reaching a stage in the bucket of ts.
local function count_stage(ts, stage, ch, dev, cty, by)
  local bk = bucket_key(ts)
  redis.call('HINCRBY', bk, B_SESSIONS .. SEP .. stage .. SEP .. ch .. SEP .. dev, by)
  redis.call('HINCRBY', bk, B_SESSIONS_C .. SEP .. stage .. SEP .. cty, by)
end

local sz = pfx .. K_SESSIONS
local orders = pfx .. K_ORDERS
local oz = pfx .. K_ORDER_TIMES
local accepted, dups = 0, 0
local t_fields = {}
for k = 0, #stages - 1 do
  t_fields[#t_fields + 1] = S_STAGE_TIME .. k
end

local ev = cjson.decode(ARGV[i])
i = 1
local last = #ev
while i + RECORD_WIDTH - 1 <= last do
  local eid, sid = ev[i + R_EVENT_ID], ev[i + R_SESSION_ID]
  local ts = tonumber(ev[i + R_TS_MS])
  local stage = tonumber(ev[i + R_STAGE])
  local etype = ev[i + R_TYPE]
  local sk = pfx .. K_SESSION .. sid
  if redis.call('HSETNX', sk, S_EVENT .. eid, '1') == 0 then
    dups = dups + 1
  else
    accepted = accepted + 1
    redis.call('HINCRBY', tot, T_EVENTS .. SEP .. etype, 1)
    local state = redis.call('HMGET', sk, S_SEGMENT, unpack(t_fields))
    local ch, dev, cty
    if state[1] then
      ch, dev, cty = string.match(state[1], SEGMENT_PATTERN)
    else
      -- Segments come from the session's first accepted event.
      ch, dev, cty = ev[i + R_CHANNEL], ev[i + R_DEVICE], ev[i + R_COUNTRY]
      redis.call('HSET', sk, S_SEGMENT, ch .. SEGMENT_SEP .. dev .. SEGMENT_SEP .. cty)
    end
    -- Closed funnel: the session reached every stage <= stage at ts at the latest.
    -- t_k never decreases with k, so stop at the first stage already reached earlier.
    for k = stage, 0, -1 do
      local prev = state[k + 2]
      local name = stages[k + 1]
      if not prev then
        redis.call('HSET', sk, S_STAGE_TIME .. k, ts)
        count_stage(ts, name, ch, dev, cty, 1)
        redis.call('HINCRBY', tot, T_FUNNEL .. SEP .. name .. SEP .. ch .. SEP .. dev, 1)
      elseif ts < tonumber(prev) then
        redis.call('HSET', sk, S_STAGE_TIME .. k, ts)
        local old = tonumber(prev)
        if math.floor(old / bucket_ms) ~= math.floor(ts / bucket_ms) then
          count_stage(old, name, ch, dev, cty, -1)
          count_stage(ts, name, ch, dev, cty, 1)
        end
      else
        break
      end
    end
    redis.call('ZADD', sz, 'GT', ts, sid)
    local oid = ev[i + R_ORDER_ID]
    if stage == purchase_stage and oid ~= '' then
      -- Each order counts once: the first accepted event with its order_id wins.
      if redis.call('HSETNX', orders, oid, ts) == 1 then
        redis.call('ZADD', oz, ts, oid)
        local rev, cur = ev[i + R_REVENUE_UNITS], ev[i + R_CURRENCY]
        local bk = bucket_key(ts)
        redis.call('HINCRBY', bk, B_ORDERS .. SEP .. cur .. SEP .. ch .. SEP .. dev, 1)
        redis.call('HINCRBY', bk, B_ORDERS_C .. SEP .. cur .. SEP .. cty, 1)
        redis.call('HINCRBY', bk, B_REVENUE .. SEP .. cur .. SEP .. ch .. SEP .. dev, rev)
        redis.call('HINCRBY', bk, B_REVENUE_C .. SEP .. cur .. SEP .. cty, rev)
        redis.call('HINCRBY', tot, T_ORDERS .. SEP .. ch .. SEP .. dev, 1)
        redis.call('HINCRBY', tot, T_REVENUE .. SEP .. cur, rev)
      end
    end
  end
  i = i + RECORD_WIDTH
end
redis.call('HINCRBY', tot, T_DUP, dups)

local bz = pfx .. K_BUCKETS
for b, _ in pairs(touched_buckets) do
  redis.call('ZADD', bz, 'NX', b, string.format('%d', b))
end

-- Event-time eviction, bounded per batch so one call never runs long.
local horizon = ARGV[9]
local old_sessions = redis.call('ZRANGEBYSCORE', sz, '-inf', '(' .. horizon, 'LIMIT', 0, 2000)
for _, sid in ipairs(old_sessions) do
  redis.call('DEL', pfx .. K_SESSION .. sid)
  redis.call('ZREM', sz, sid)
end
local old_orders = redis.call('ZRANGEBYSCORE', oz, '-inf', '(' .. horizon, 'LIMIT', 0, 2000)
for _, oid in ipairs(old_orders) do
  redis.call('HDEL', orders, oid)
  redis.call('ZREM', oz, oid)
end
local old_buckets = redis.call('ZRANGEBYSCORE', bz, '-inf', '(' .. ARGV[10], 'LIMIT', 0, 200)
for _, b in ipairs(old_buckets) do
  redis.call('DEL', pfx .. K_BUCKET .. b)
  redis.call('ZREM', bz, b)
end

redis.call('HSET', meta,
  M_OFFSET, ARGV[3], M_FP, ARGV[4], M_WM, ARGV[5], M_HW, ARGV[6], M_APPLIED, ARGV[7])
return {'ok', tonumber(ARGV[3]), accepted, dups}
