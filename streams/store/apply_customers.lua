-- storepulse: apply one batch of customer facts of one partition atomically, with its offset.
--
-- Every key starts with ARGV[A_PREFIX], carrying the hash tag {customer topic/partition}: one
-- Redis Cluster slot. Key and field names come from the header streams/store/customer_keys.py
-- renders in front of this text: the script spells none itself.
--
-- ARGV: customer_keys.CustomerArgs (A_PREFIX .. A_N_TOTALS), A_N_TOTALS (field, increment)
-- pairs for the totals, then one JSON array of RECORD_WIDTH strings per fact, flattened, in the
-- slots of customer_keys.FactRecord (R_KIND .. R_HISTORY); period starts come computed.
--
-- Facts are idempotent: an activity is set adds; an order is new only if the customer's hash
-- does not hold its id yet; a history replaces the customer's one. Each change computes the
-- customer's derived values before and after (first order: new customer and cohort; second
-- overall order: repeat) and moves the per-period counts by the difference, so the result
-- depends on the set of facts, not on their order (docs/semantics.md, "Customers").
--
-- Returns {status, stored offset, facts applied, order duplicates}; STATUS_CONFLICT: the stored
-- offset is not the expected one, nothing written.

local pfx = ARGV[A_PREFIX]
local meta = pfx .. K_META
local stored = tonumber(redis.call('HGET', meta, M_OFFSET) or '-1')
if stored ~= tonumber(ARGV[A_EXPECTED_OFFSET]) then
  return {STATUS_CONFLICT, stored, 0, 0}
end

local tot = pfx .. K_TOTALS
local horizon = tonumber(ARGV[A_HORIZON_S])
local n_pairs = tonumber(ARGV[A_N_TOTALS])
local rec = cjson.decode(ARGV[A_N_TOTALS + 2 * n_pairs + 1])
local i = A_N_TOTALS + 1
for _ = 1, n_pairs do
  redis.call('HINCRBY', tot, ARGV[i], ARGV[i + 1])
  i = i + 2
end

local G = {G_1, G_2, G_3, G_4}
local index = pfx .. K_PERIODS
local touched = {}

-- The key of one period's set or hash; the period is indexed for retention on first use.
local function pkey(kind, k, start)
  local name = G[k] .. PSEP .. start
  if not touched[name] then
    touched[name] = true
    redis.call('ZADD', index, 'NX', start, name)
  end
  return pfx .. kind .. name
end

-- Periods that started before the horizon are evicted (or about to be): never written.
local function kept(start)
  return tonumber(start) >= horizon
end

-- Redis reads "-0" as no integer: zero stays unsigned.
local function negated(units, sign)
  if sign < 0 and tonumber(units) ~= 0 then
    return MINUS .. units
  end
  return units
end

local function detail(ck, oid)
  local raw = redis.call('HGET', ck, C_ORDER .. oid)
  local ts, units, cur, ch, dev, p1, p2, p3, p4 = string.match(raw, DETAIL_PATTERN)
  return {ts = ts, units = units, cur = cur, ch = ch, dev = dev, p = {p1, p2, p3, p4}}
end

-- A customer's derived values: h imported orders, n (up to 2) tracked ones, its first order
-- (only without history: it is then the first overall) and the order that is its second
-- overall (the second tracked one without history, the first with one imported order).
local function state(ck, cz)
  local s = {h = 0}
  local hist = redis.call('HGET', ck, C_HISTORY)
  if hist then
    s.h = tonumber((string.match(hist, HISTORY_PATTERN)))
  end
  local two = redis.call('ZRANGE', cz, 0, 1)
  s.n = #two
  if s.h == 0 and two[1] then
    s.first, s.fd = two[1], detail(ck, two[1])
  end
  local rep
  if s.h == 0 then
    rep = two[2]
  elseif s.h == 1 then
    rep = two[1]
  end
  if rep then
    s.rep, s.rd = rep, detail(ck, rep)
  end
  return s
end

-- New customers: the cohort set of each period of the first order, and its segment counts.
local function count_new(cust, d, sign)
  for k = 1, N_PERIODS do
    local start = d.p[k]
    if kept(start) then
      if sign > 0 then
        redis.call('SADD', pkey(K_COHORT, k, start), cust)
      else
        redis.call('SREM', pkey(K_COHORT, k, start), cust)
      end
      local pc = pkey(K_COUNTS, k, start)
      redis.call('HINCRBY', pc, P_NEW_CHANNEL .. SEP .. d.ch, sign)
      redis.call('HINCRBY', pc, P_NEW_DEVICE .. SEP .. d.dev, sign)
    end
  end
end

local function count_repeat(d, sign)
  for k = 1, N_PERIODS do
    if kept(d.p[k]) then
      redis.call('HINCRBY', pkey(K_COUNTS, k, d.p[k]), P_REPEAT, sign)
    end
  end
end

local function move(cust, b, a)
  if b.first ~= a.first then
    if b.first then
      count_new(cust, b.fd, -1)
    end
    if a.first then
      count_new(cust, a.fd, 1)
    end
  end
  if b.rep ~= a.rep then
    if b.rep then
      count_repeat(b.rd, -1)
    end
    if a.rep then
      count_repeat(a.rd, 1)
    end
  end
end

-- Add (sign 1) or take away (-1) all the customer's orders but skip from the values of the
-- cohort of granularity k starting at cohort: ordering customers and revenue per period.
local function cohort_pass(ck, cz, k, cohort, sign, skip)
  if not kept(cohort) then
    return
  end
  local vk = pkey(K_VALUES, k, cohort)
  local seen = {}
  for _, oid in ipairs(redis.call('ZRANGE', cz, 0, -1)) do
    if oid ~= skip then
      local d = detail(ck, oid)
      local q = d.p[k]
      if kept(q) then
        if not seen[q] then
          seen[q] = true
          redis.call('HINCRBY', vk, V_CUSTOMERS .. SEP .. q, sign)
        end
        redis.call('HINCRBY', vk, V_REVENUE .. SEP .. q .. SEP .. d.cur, negated(d.units, sign))
        redis.call('HINCRBY', vk, V_ORDERS .. SEP .. q .. SEP .. d.cur, sign)
      end
    end
  end
end

-- The cohort periods before and after differ: the customer's values leave one, join the other.
local function cohort_moves(ck, cz, k, b, a, skip)
  local cb = b.first and b.fd.p[k]
  local ca = a.first and a.fd.p[k]
  if cb == ca then
    return false
  end
  if cb then
    cohort_pass(ck, cz, k, cb, -1, skip)
  end
  if ca then
    cohort_pass(ck, cz, k, ca, 1, nil)
  end
  return true
end

--@accounts: apply_accounts.lua is inserted here (streams/store/customers.py).

local dup_orders = 0
local by_kind = {}

local function apply_activity(j)
  local cust = rec[j + R_CUSTOMER]
  for k = 1, N_PERIODS do
    local start = rec[j + R_HOUR + k - 1]
    if kept(start) then
      redis.call('SADD', pkey(K_ACTIVE, k, start), cust)
    end
  end
end

-- A customer new in the ordering set of period `start` (granularity k) is retained there when it
-- ordered in the period before, and in the period after when it orders there: both counts only
-- grow, whatever order the facts come in.
local function count_retained(cust, k, start, before, after)
  local name = G[k] .. PSEP
  if redis.call('SISMEMBER', pfx .. K_ORDERING .. name .. before, cust) == 1 then
    redis.call('HINCRBY', pkey(K_COUNTS, k, start), P_RETAINED, 1)
  end
  if kept(after) and redis.call('SISMEMBER', pfx .. K_ORDERING .. name .. after, cust) == 1 then
    redis.call('HINCRBY', pkey(K_COUNTS, k, after), P_RETAINED, 1)
  end
end

local function apply_order(j)
  local cust, oid = rec[j + R_CUSTOMER], rec[j + R_ORDER_ID]
  local ck, cz = pfx .. K_CUSTOMER .. cust, pfx .. K_CUSTOMER_ORDERS .. cust
  if redis.call('HEXISTS', ck, C_ORDER .. oid) == 1 then
    dup_orders = dup_orders + 1
    return
  end
  local b = state(ck, cz)
  local ts, units, cur = rec[j + R_TS_MS], rec[j + R_REVENUE_UNITS], rec[j + R_CURRENCY]
  local ch, dev = rec[j + R_CHANNEL], rec[j + R_DEVICE]
  local periods = {}
  for k = 1, N_PERIODS do
    periods[k] = rec[j + R_HOUR + k - 1]
  end
  local before = {string.match(rec[j + R_BEFORE], STARTS_PATTERN)}
  local after = {string.match(rec[j + R_AFTER], STARTS_PATTERN)}
  local text = table.concat({ts, units, cur, ch, dev, unpack(periods)}, DETAIL_SEP)
  redis.call('HSET', ck, C_ORDER .. oid, text)
  redis.call('ZADD', cz, ts, oid)
  order_recovers(cust, oid, tonumber(ts))
  local a = state(ck, cz)
  for k = 1, N_PERIODS do
    local start = periods[k]
    local added = 0
    if kept(start) then
      added = redis.call('SADD', pkey(K_ORDERING, k, start), cust)
      if added == 1 then
        count_retained(cust, k, start, before[k], after[k])
      end
      local pc = pkey(K_COUNTS, k, start)
      redis.call('HINCRBY', pc, P_ORDERS, 1)
      redis.call('HINCRBY', pc, P_REVENUE .. SEP .. cur, units)
    end
    if k >= COHORT_FROM and not cohort_moves(ck, cz, k, b, a, oid) and a.first then
      -- Same cohort as before: only this order's values join it.
      local cohort = a.fd.p[k]
      if kept(cohort) and kept(start) then
        local vk = pkey(K_VALUES, k, cohort)
        if added == 1 then
          redis.call('HINCRBY', vk, V_CUSTOMERS .. SEP .. start, 1)
        end
        redis.call('HINCRBY', vk, V_REVENUE .. SEP .. start .. SEP .. cur, units)
        redis.call('HINCRBY', vk, V_ORDERS .. SEP .. start .. SEP .. cur, 1)
      end
    end
  end
  move(cust, b, a)
  -- Cumulative totals count an order and a new customer once, as first seen; never moved.
  if b.n == 0 and b.h == 0 then
    redis.call('HINCRBY', tot, T_ORDERS .. SEP .. O_NEW, 1)
    redis.call('HINCRBY', tot, T_NEW .. SEP .. ch .. SEP .. dev, 1)
  else
    redis.call('HINCRBY', tot, T_ORDERS .. SEP .. O_RETURNING, 1)
  end
  redis.call('HINCRBY', tot, T_REVENUE .. SEP .. cur, units)
end

local function apply_history(j)
  local cust, text = rec[j + R_CUSTOMER], rec[j + R_HISTORY]
  local ck, cz = pfx .. K_CUSTOMER .. cust, pfx .. K_CUSTOMER_ORDERS .. cust
  if redis.call('HGET', ck, C_HISTORY) == text then
    return
  end
  local b = state(ck, cz)
  redis.call('HSET', ck, C_HISTORY, text)
  local a = state(ck, cz)
  for k = COHORT_FROM, N_PERIODS do
    cohort_moves(ck, cz, k, b, a, nil)
  end
  move(cust, b, a)
  account_history(cust)
end

local applied = 0
local j = 1
while j + RECORD_WIDTH - 1 <= #rec do
  local kind = rec[j + R_KIND]
  if kind == FACT_ACTIVITY then
    apply_activity(j)
  elseif kind == FACT_ORDER then
    apply_order(j)
  elseif kind == FACT_HISTORY then
    apply_history(j)
  elseif kind == FACT_CART then
    apply_cart(rec, j)
  elseif kind == FACT_ACCOUNT_ACTIVITY then
    -- An account is a customer: its facts count as the customer's, and feed its views.
    apply_activity(j)
    account_activity(j)
  elseif kind == FACT_ACCOUNT_ORDER then
    apply_order(j)
    account_order(j)
  end
  by_kind[kind] = (by_kind[kind] or 0) + 1
  applied = applied + 1
  j = j + RECORD_WIDTH
end
for kind, n in pairs(by_kind) do
  redis.call('HINCRBY', tot, T_FACTS .. SEP .. kind, n)
end
if dup_orders > 0 then
  redis.call('HINCRBY', tot, T_DUP_ORDERS, dup_orders)
end

-- Retention in event time, bounded per call: UNLINK frees a large set off the main thread.
local old = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. ARGV[A_HORIZON_S], 'LIMIT', 0, 50)
for _, name in ipairs(old) do
  for _, kind in ipairs({K_ACTIVE, K_ORDERING, K_COHORT, K_COUNTS, K_VALUES}) do
    redis.call('UNLINK', pfx .. kind .. name)
  end
  evict_account_hour(name)
  redis.call('ZREM', index, name)
end
trim_accounts()

carts_done()

redis.call('HSET', meta,
  M_OFFSET, ARGV[A_NEW_OFFSET], M_FP, ARGV[A_NEW_FP], M_WM, ARGV[A_WATERMARK_MS],
  M_HW, ARGV[A_HIGHWATER], M_APPLIED, ARGV[A_NOW_MS])
return {STATUS_OK, tonumber(ARGV[A_NEW_OFFSET]), applied, dup_orders}
