-- storepulse: apply one batch of one partition atomically, together with its offset.
--
-- Every key this script touches starts with ARGV[1], a prefix carrying the hash tag
-- {topic/partition}, so all of them live in one Redis Cluster slot. Key and field names come
-- from the header streams/store/keys.py renders in front of this text (K_*, M_*, T_*, B_*,
-- S_*, R_*): the script spells none itself.
--
-- ARGV: the fixed arguments of keys.BatchArgs (A_PREFIX .. A_N_TOTALS), then A_N_TOTALS
-- (field, increment) pairs for the totals hash (rejected counts, lost dead letters), then one
-- JSON array (cjson) of RECORD_WIDTH strings per event, flattened, in the slots of
-- keys.EventRecord (offsets R_EVENT_ID .. R_CURRENCY). One argument instead of 11 per event:
-- redis-py packs each argument in Python, ~30 us/event.
--
-- Customer facts (streams/contract/facts.py), with A_CUSTOMER_FACTS = 1: one activity fact per
-- new (customer, session, user, hour), remembered in the session hash (and evicted with it),
-- and one order fact per counted order that has a customer, none for duplicates or anonymous
-- events; of the account kinds when the event carried an account_id (R_ACCOUNT_ID). They are
-- appended to the partition's outbox stream in this same atomic call, and returned, so the
-- worker publishes them without reading the outbox (docs/semantics.md).
-- Anonymous orders are counted per hour (K_ANON), for the customer reports.
--
-- Sessions in event time (sessions.lua, loaded in front of this text): track() per accepted
-- event, end_sessions() after the batch ends the sessions whose end (last ts + the session
-- timeout) is below the new watermark, adds their figures to the bucket of their end, lists
-- abandoned carts and emits cart facts (one per change) with the other facts.
--
-- Returns {status, stored offset, accepted, duplicates[, limits]}; with STATUS_OK also
-- {{outbox entry id, {customer, fact, ...}}, ...}, one entry per OUTBOX_PAIRS facts. STATUS_CONFLICT: the stored
-- offset is not the expected one (another worker applied meanwhile). STATUS_LIMIT: an event
-- would take a session past A_SESSION_CAP distinct events; limits is JSON
-- [[session_id, events held, [ids of this batch it holds already]], ...] so the worker can
-- dead-letter exactly the events past the cap. Either way nothing was written.

local pfx = ARGV[A_PREFIX]
local meta = pfx .. K_META
local stored = tonumber(redis.call('HGET', meta, M_OFFSET) or '-1')
if stored ~= tonumber(ARGV[A_EXPECTED_OFFSET]) then
  return {STATUS_CONFLICT, stored, 0, 0}
end

local tot = pfx .. K_TOTALS
local bucket_ms = tonumber(ARGV[A_BUCKET_MS])
local stages = {}
for name in string.gmatch(ARGV[A_STAGES], '[^,]+') do
  stages[#stages + 1] = name
end
local purchase_stage = #stages - 1

local n_pairs = tonumber(ARGV[A_N_TOTALS])
local ev = cjson.decode(ARGV[A_N_TOTALS + 2 * n_pairs + 1])
local last = #ev

-- The session cap, checked before anything is written. A session that holds n distinct
-- events and gets k of this batch's events can only pass the cap when n + k > cap; only then
-- are its events looked at one by one (one HGET per session of the batch otherwise).
local cap = tonumber(ARGV[A_SESSION_CAP])
local batch_sessions = {}
local order = {}
for j = 1, last - RECORD_WIDTH + 1, RECORD_WIDTH do
  local sid = ev[j + R_SESSION_ID]
  local ids = batch_sessions[sid]
  if not ids then
    ids = {}
    batch_sessions[sid] = ids
    order[#order + 1] = sid
  end
  ids[#ids + 1] = ev[j + R_EVENT_ID]
end
local limits = {}
for _, sid in ipairs(order) do
  local ids = batch_sessions[sid]
  local sk = pfx .. K_SESSION .. sid
  local held = held_count(sid, sk)  -- sessions.lua
  if held + #ids > cap then
    local seen, known, new = {}, {}, 0
    for _, eid in ipairs(ids) do
      if not seen[eid] then
        seen[eid] = true
        if redis.call('HEXISTS', sk, S_EVENT .. eid) == 1 then
          known[#known + 1] = eid
        else
          new = new + 1
        end
      end
    end
    if held + new > cap then
      limits[#limits + 1] = {sid, held, known}
    end
  end
end
if #limits > 0 then
  return {STATUS_LIMIT, stored, 0, 0, cjson.encode(limits)}
end

local i = A_N_TOTALS + 1
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

local orders = pfx .. K_ORDERS
local oz = pfx .. K_ORDER_TIMES
local accepted, dups = 0, 0
local facts_on = tonumber(ARGV[A_CUSTOMER_FACTS]) == 1
local facts, n_facts = {}, {}
local anon_days = {}
local t_fields = {}
for k = 0, #stages - 1 do
  t_fields[#t_fields + 1] = S_STAGE_TIME .. k
end
local t_track_fields = {unpack(t_fields)}
for _, f in ipairs(TRACK_FIELDS) do
  t_track_fields[#t_track_fields + 1] = f
end

i = 1
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
    count_event(sk)
    redis.call('HINCRBY', tot, T_EVENTS .. SEP .. etype, 1)
    -- The first event of a session in the batch reads what track() needs too.
    local state = redis.call('HMGET', sk, S_SEGMENT,
      unpack(tracked[sid] and t_fields or t_track_fields))
    local ch, dev, cty
    if state[1] then
      local g = segment_of(state[1])  -- sessions.lua: split once per call
      ch, dev, cty = g[1], g[2], g[3]
    else
      -- Segments come from the session's first accepted event.
      ch, dev, cty = ev[i + R_CHANNEL], ev[i + R_DEVICE], ev[i + R_COUNTRY]
      redis.call('HSET', sk, S_SEGMENT, ch .. SEGMENT_SEP .. dev .. SEGMENT_SEP .. cty,
        unpack(NEW_SESSION_FIELDS))
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
    track(pfx, sid, ev, i, ts, stage, state, #t_fields + 2)
    local cust, uid = ev[i + R_CUSTOMER], ev[i + R_USER_ID]
    -- An event with an account_id makes account facts (its customer is that account).
    local is_account = ev[i + R_ACCOUNT_ID] ~= ''
    if facts_on and cust ~= '' then
      local hour = string.format('%d', math.floor(ts / HOUR_MS) * (HOUR_MS / 1000))
      local kind = is_account and FACT_ACCOUNT_ACTIVITY or FACT_ACTIVITY
      local mark = S_ACTIVITY .. hour .. S_ACTIVITY_SEP .. kind .. #cust .. S_ACTIVITY_SEP
        .. cust .. uid
      if redis.call('HSETNX', sk, mark, '1') == 1 then
        facts[#facts + 1] = cust
        facts[#facts + 1] = cjson.encode({kind, cust, sid, uid, hour})
        n_facts[kind] = (n_facts[kind] or 0) + 1
      end
    end
    local oid = ev[i + R_ORDER_ID]
    if stage == purchase_stage and oid ~= '' then
      -- Each order counts once: the first accepted event with its order_id wins.
      if redis.call('HSETNX', orders, oid, ts) == 1 then
        redis.call('ZADD', oz, ts, oid)
        redis.call('HINCRBY', sk, SK.ORDERS, 1)
        local rev, cur = ev[i + R_REVENUE_UNITS], ev[i + R_CURRENCY]
        local bk = bucket_key(ts)
        redis.call('HINCRBY', bk, B_ORDERS .. SEP .. cur .. SEP .. ch .. SEP .. dev, 1)
        redis.call('HINCRBY', bk, B_ORDERS_C .. SEP .. cur .. SEP .. cty, 1)
        redis.call('HINCRBY', bk, B_REVENUE .. SEP .. cur .. SEP .. ch .. SEP .. dev, rev)
        redis.call('HINCRBY', bk, B_REVENUE_C .. SEP .. cur .. SEP .. cty, rev)
        redis.call('HINCRBY', tot, T_ORDERS .. SEP .. ch .. SEP .. dev, 1)
        redis.call('HINCRBY', tot, T_REVENUE .. SEP .. cur, rev)
        if cust == '' then
          local day = math.floor(ts / DAY_MS) * (DAY_MS / 1000)
          local hour = string.format('%d', math.floor(ts / HOUR_MS) * (HOUR_MS / 1000))
          anon_days[day] = true
          redis.call('HINCRBY', pfx .. K_ANON .. string.format('%d', day), hour, 1)
          redis.call('HINCRBY', tot, T_ANON_ORDERS, 1)
        elseif facts_on then
          local kind = is_account and FACT_ACCOUNT_ORDER or FACT_ORDER
          facts[#facts + 1] = cust
          facts[#facts + 1] = cjson.encode(
            {kind, cust, oid, ev[i + R_TS_MS], rev, cur, ch, dev, sid, uid})
          n_facts[kind] = (n_facts[kind] or 0) + 1
        end
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
local anon_index = pfx .. K_ANON_DAYS
for day, _ in pairs(anon_days) do
  redis.call('ZADD', anon_index, 'NX', day, string.format('%d', day))
end

-- Sessions the new watermark ended (sessions.lua), and their cart facts.
local cart_out = end_sessions(pfx, facts_on)
for j = 1, #cart_out do
  facts[#facts + 1] = cart_out[j]
end
if #cart_out > 0 then
  redis.call('HINCRBY', tot, T_FACTS .. SEP .. FACT_CART, #cart_out / 2)
end

local outbox = {}
for kind, n in pairs(n_facts) do
  redis.call('HINCRBY', tot, T_FACTS .. SEP .. kind, n)
end
-- An entry's fields are the facts' positions (a stream entry is read back as a map, so the
-- customers, which repeat, cannot be its field names); a fact's customer is its slot 2.
for first = 1, #facts, 2 * OUTBOX_PAIRS do
  local pairs_, fields = {}, {}
  for j = first, math.min(#facts, first + 2 * OUTBOX_PAIRS - 1), 2 do
    pairs_[#pairs_ + 1] = facts[j]
    pairs_[#pairs_ + 1] = facts[j + 1]
    fields[#fields + 1] = string.format('%d', #fields / 2)
    fields[#fields + 1] = facts[j + 1]
  end
  local id = redis.call('XADD', pfx .. K_OUTBOX, '*', unpack(fields))
  outbox[#outbox + 1] = {id, pairs_}
end

-- Event-time eviction, bounded per batch so one call never runs long.
-- (Sessions: end_sessions above.)
local horizon = ARGV[A_SESSION_HORIZON_MS]
local old_orders = redis.call('ZRANGEBYSCORE', oz, '-inf', '(' .. horizon, 'LIMIT', 0, 2000)
for _, oid in ipairs(old_orders) do
  redis.call('HDEL', orders, oid)
  redis.call('ZREM', oz, oid)
end
local bucket_horizon = '(' .. ARGV[A_BUCKET_HORIZON_S]
local old_buckets = redis.call('ZRANGEBYSCORE', bz, '-inf', bucket_horizon, 'LIMIT', 0, 200)
for _, b in ipairs(old_buckets) do
  redis.call('DEL', pfx .. K_BUCKET .. b, pfx .. SK.BUCKET .. b)  -- SK: sessions.lua
  redis.call('ZREM', bz, b)
end
local anon_horizon = '(' .. ARGV[A_ANON_HORIZON_S]
local old_days = redis.call('ZRANGEBYSCORE', anon_index, '-inf', anon_horizon, 'LIMIT', 0, 50)
for _, day in ipairs(old_days) do
  redis.call('DEL', pfx .. K_ANON .. day)
  redis.call('ZREM', anon_index, day)
end

redis.call('HSET', meta,
  M_OFFSET, ARGV[A_NEW_OFFSET], M_FP, ARGV[A_NEW_FP], M_WM, ARGV[A_WATERMARK_MS],
  M_HW, ARGV[A_HIGHWATER], M_APPLIED, ARGV[A_NOW_MS])
return {STATUS_OK, tonumber(ARGV[A_NEW_OFFSET]), accepted, dups, outbox}
