-- storepulse: the account views, written by the customer stage's call (inserted into
-- apply_customers.lua, whose pfx, rec, kept and pkey it uses). Key and field names come from
-- the header of streams/store/account_keys.py; docs/semantics.md, "Accounts", says what they mean.
--
-- Facts of the account kinds (FACT_ACCOUNT_ACTIVITY, FACT_ACCOUNT_ORDER) add points: (kind,
-- item, hour) once each. A new point looks up the previous and next points of its item in the
-- account's lex zset and keeps, per hour, the previous point hour of each member: the distinct
-- members of any range of hours are then counted without a union, and the result depends on the
-- set of facts only, not on their order. Orders keep their gaps and, per order, twice the median
-- gap up to it, so that the at-risk test is one lookup at any instant.

local risk_p = tonumber(ARGV[A_RISK_FACTOR])
local accounts_set = pfx .. K_ACCOUNTS
local risk_key = pfx .. K_ARISK

local function hpad(h)
  return string.format(HOUR_FORMAT, h)
end

-- The days of the account keys (hours: every point; days: the first point of a day).
local function day_of(h)
  return h - h % DAY_S
end

local function take_one(key, a)
  if tonumber(redis.call('ZINCRBY', key, -1, a)) <= 0 then
    redis.call('ZREM', key, a)
  end
end

-- Add the point (kind, item, hour h) of account a; nothing if it is there already. Per hour,
-- every point's member with its previous point's hour; per day, the first point of the day's
-- (its previous point is before the day): a member's first point in any range of whole hours
-- (whole days and the hours at the edges) is its one with a previous point before the range.
-- The new-kinds count, per account and hour, the members whose very first point is there.
local function add_point(a, ap, kind, item, h)
  local base = PT_ITEM .. kind .. #item .. ITEM_SEP .. item
  local m = base .. hpad(h)
  if redis.call('ZADD', ap, 'NX', 0, m) == 0 then
    return
  end
  local before = redis.call('ZRANGE', ap, '(' .. m, '[' .. base, 'BYLEX', 'REV', 'LIMIT', 0, 1)[1]
  local after = redis.call('ZRANGE', ap, '(' .. m, '[' .. base .. HOUR_MAX, 'BYLEX',
    'LIMIT', 0, 1)[1]
  local prev = before and tonumber(string.sub(before, -HOUR_DIGITS)) or -1
  local nxt = after and tonumber(string.sub(after, -HOUR_DIGITS))
  local member = a
  if item ~= '' then
    member = #a .. ITEM_SEP .. a .. item
  end
  local pk, d = H_PREV .. string.lower(kind), day_of(h)
  -- nxt > h: its hour and day are kept too.
  redis.call('ZADD', pkey(pk, 1, h), prev, member)
  if nxt then
    redis.call('ZADD', pkey(pk, 1, nxt), h, member)
  end
  if kept(d) and (prev == -1 or day_of(prev) ~= d) then
    redis.call('ZADD', pkey(pk, 2, d), prev, member)
  end
  if nxt and day_of(nxt) ~= d then
    redis.call('ZADD', pkey(pk, 2, day_of(nxt)), h, member)
  end
  if prev == -1 and string.find(NEW_KINDS, kind, 1, true) then
    local nk = pkey(H_NEW .. string.lower(kind), 1, h)
    redis.call('ZINCRBY', nk, 1, a)
    if nxt then
      take_one(pkey(H_NEW .. string.lower(kind), 1, nxt), a)
    end
  end
end

local function history_of(a)
  local hist = redis.call('HGET', pfx .. K_CUSTOMER .. a, C_HISTORY)
  if hist then
    local n, f, l = string.match(hist, HISTORY_PATTERN)
    return tonumber(n), tonumber(f), tonumber(l)
  end
end

-- First and last order of a seen account, imported history included (af, ax).
local function refresh_first(a)
  local _, hf, hl = history_of(a)
  local ao = pfx .. K_AORDERS .. a
  local first = redis.call('ZRANGE', ao, 0, 0, 'WITHSCORES')[2]
  local last = redis.call('ZRANGE', ao, -1, -1, 'WITHSCORES')[2]
  local f, l = hf, hl
  if first and (not f or tonumber(first) < f) then
    f = tonumber(first)
  end
  if last and (not l or tonumber(last) > l) then
    l = tonumber(last)
  end
  if f then
    redis.call('ZADD', pfx .. K_AFIRST, f, a)
    redis.call('ZADD', pfx .. K_ALAST, l, a)
  end
end

local function seen(a)
  if redis.call('SADD', accounts_set, a) == 1 then
    refresh_first(a)
  end
end

local function detail_of(ad, oid)
  local ts, units, cur, s, u, m2 = string.match(redis.call('HGET', ad, oid), ADETAIL_PATTERN)
  return {ts = ts, units = units, cur = cur, s = s, u = u, m2 = m2}
end

local function set_m2(ad, oid, m2)
  local d = detail_of(ad, oid)
  redis.call('HSET', ad, oid, table.concat({d.ts, d.units, d.cur, d.s, d.u, m2}, DETAIL_SEP))
end

-- The risk index entry of an account with its last order: with the worker's factor.
local function index_risk(a)
  local ao, ad = pfx .. K_AORDERS .. a, pfx .. K_ADETAILS .. a
  local last = redis.call('ZRANGE', ao, -1, -1, 'WITHSCORES')
  if not last[1] then
    return
  end
  redis.call('ZADD', pfx .. K_ALAST_T, last[2], a)
  local m2 = detail_of(ad, last[1]).m2
  local start = m2 ~= '' and risk_start(tonumber(last[2]), tonumber(m2), risk_p)
  if start then
    redis.call('ZADD', risk_key, start, a)
  else
    redis.call('ZREM', risk_key, a)
  end
end

local function median2(sorted, n)
  if n % 2 == 1 then
    return 2 * sorted[(n + 1) / 2]
  end
  return sorted[n / 2] + sorted[n / 2 + 1]
end

-- Gaps and doubled medians after the order oid (at ts) joined the account's orders.
local function order_gaps(a, oid, ts)
  local ao, ad, gz = pfx .. K_AORDERS .. a, pfx .. K_ADETAILS .. a, pfx .. K_AGAPS .. a
  local r = redis.call('ZRANK', ao, oid)
  local n = redis.call('ZCARD', ao)
  if r > 0 then
    local prev = redis.call('ZRANGE', ao, r - 1, r - 1, 'WITHSCORES')
    redis.call('ZADD', gz, ts - tonumber(prev[2]), oid)
  end
  local nxt = redis.call('ZRANGE', ao, r + 1, r + 1, 'WITHSCORES')
  if not nxt[1] then
    -- Appended: only its own median changes, that of every gap (the middle ones by rank).
    if n >= 3 then
      local g = n - 1
      local mid = redis.call('ZRANGE', gz, math.floor((g - 1) / 2), math.floor(g / 2), 'WITHSCORES')
      local m2 = tonumber(mid[2]) + tonumber(mid[#mid])
      set_m2(ad, oid, string.format('%d', m2))
    end
  else
    -- In between: every later order's median may change; recomputed in order.
    redis.call('ZADD', gz, tonumber(nxt[2]) - ts, nxt[1])
    local all = redis.call('ZRANGE', ao, 0, -1, 'WITHSCORES')
    local sorted = {}
    for k = 1, n do
      if k >= 2 then
        local gap = tonumber(all[2 * k]) - tonumber(all[2 * k - 2])
        local lo, hi = 1, #sorted + 1
        while lo < hi do
          local mid = math.floor((lo + hi) / 2)
          if sorted[mid] <= gap then
            lo = mid + 1
          else
            hi = mid
          end
        end
        table.insert(sorted, lo, gap)
      end
      if k - 1 >= r then
        local m2 = ''
        if k >= 3 then
          m2 = string.format('%d', median2(sorted, k - 1))
        end
        set_m2(ad, all[2 * k - 1], m2)
      end
    end
  end
  index_risk(a)
end

-- A factor other than the one the index was built with: rebuild it (once, all accounts).
if redis.call('HGET', meta, M_RISK) ~= ARGV[A_RISK_FACTOR] then
  redis.call('DEL', risk_key)
  for _, a in ipairs(redis.call('ZRANGE', pfx .. K_ALAST_T, 0, -1)) do
    index_risk(a)
  end
  redis.call('HSET', meta, M_RISK, ARGV[A_RISK_FACTOR])
end

local function account_activity(j)
  local a, h = rec[j + R_CUSTOMER], tonumber(rec[j + R_HOUR])
  seen(a)
  if not kept(h) then
    return
  end
  local ap = pfx .. K_APOINTS .. a
  local user, session = rec[j + R_USER_ID], rec[j + R_SESSION_ID]
  add_point(a, ap, PK_ACCOUNT, '', h)
  add_point(a, ap, PK_SESSION, session, h)
  if user ~= '' then
    add_point(a, ap, PK_USER, user, h)
  end
  redis.call('ZADD', ap, 'NX', 0,
    PT_HOUR .. PT_PAIR .. hpad(h) .. #user .. ITEM_SEP .. user .. session)
  redis.call('ZADD', pfx .. K_ATRIM, 'LT', h, a)
end

local function account_order(j)
  local a, oid = rec[j + R_CUSTOMER], rec[j + R_ORDER_ID]
  local ad = pfx .. K_ADETAILS .. a
  if redis.call('HEXISTS', ad, oid) == 1 then
    return
  end
  seen(a)
  local ts, units, cur = rec[j + R_TS_MS], rec[j + R_REVENUE_UNITS], rec[j + R_CURRENCY]
  local user = rec[j + R_USER_ID]
  redis.call('ZADD', pfx .. K_AORDERS .. a, ts, oid)
  redis.call('HSET', ad, oid,
    table.concat({ts, units, cur, rec[j + R_SESSION_ID], user, ''}, DETAIL_SEP))
  local h = tonumber(rec[j + R_HOUR])
  if kept(h) then
    local ap = pfx .. K_APOINTS .. a
    add_point(a, ap, PK_ORDERING, '', h)
    if user ~= '' then
      add_point(a, ap, PK_OUSER, user, h)
    end
    for g, start in ipairs({h, day_of(h)}) do
      if kept(start) then
        redis.call('ZINCRBY', pkey(H_ORDERS, g, start), 1, a)
        redis.call('ZINCRBY', pkey(H_REVENUE .. cur .. SEP, g, start), units, a)
        local ht = pkey(H_TOTALS, g, start)
        redis.call('HINCRBY', ht, HT_ORDERS, 1)
        redis.call('HINCRBY', ht, HT_REVENUE .. SEP .. cur, units)
      end
    end
  end
  order_gaps(a, oid, tonumber(ts))
  refresh_first(a)
end

-- Imported history of any customer (it may be an account not seen yet: the directory's).
local function account_history(cust)
  local _, first = history_of(cust)
  redis.call('ZADD', pfx .. K_HFIRST, first, cust)
  if redis.call('SISMEMBER', accounts_set, cust) == 1 then
    refresh_first(cust)
  end
end

-- Points of hours past the retention go, a few accounts per call (their hours are deleted
-- with the periods; the orders and their points stay with the account).
local function trim_accounts()
  local cut = PT_HOUR .. PT_PAIR .. hpad(horizon)
  for _, a in ipairs(redis.call('ZRANGEBYSCORE', pfx .. K_ATRIM, '-inf', '(' .. horizon,
    'LIMIT', 0, 10)) do
    local ap = pfx .. K_APOINTS .. a
    local old = redis.call('ZRANGE', ap, '[' .. PT_HOUR .. PT_PAIR, '(' .. cut, 'BYLEX',
      'LIMIT', 0, 200)
    for _, m in ipairs(old) do
      local hour = string.sub(m, 3, 2 + HOUR_DIGITS)
      local rest = string.sub(m, 3 + HOUR_DIGITS)
      local colon = string.find(rest, ITEM_SEP, 1, true)
      local n = tonumber(string.sub(rest, 1, colon - 1))
      local user = string.sub(rest, colon + 1, colon + n)
      local session = string.sub(rest, colon + n + 1)
      redis.call('ZREM', ap, m,
        PT_ITEM .. PK_ACCOUNT .. 0 .. ITEM_SEP .. hour,
        PT_ITEM .. PK_SESSION .. #session .. ITEM_SEP .. session .. hour,
        PT_ITEM .. PK_USER .. #user .. ITEM_SEP .. user .. hour)
    end
    local oldest = redis.call('ZRANGE', ap, '[' .. PT_HOUR .. PT_PAIR,
      '[' .. PT_HOUR .. PT_PAIR .. HOUR_MAX, 'BYLEX', 'LIMIT', 0, 1)[1]
    if oldest then
      redis.call('ZADD', pfx .. K_ATRIM, tonumber(string.sub(oldest, 3, 2 + HOUR_DIGITS)), a)
    else
      redis.call('ZREM', pfx .. K_ATRIM, a)
    end
  end
end

-- The account keys of an hour or a day past the retention (weeks and months have none).
local function evict_account_hour(name)
  local g = string.sub(name, 1, #G[1] + #PSEP)
  if g ~= G[1] .. PSEP and g ~= G[2] .. PSEP then
    return
  end
  local ht = pfx .. H_TOTALS .. name
  for _, f in ipairs(redis.call('HKEYS', ht)) do
    if f ~= HT_ORDERS then
      local cur = string.sub(f, #HT_REVENUE + #SEP + 1)
      redis.call('UNLINK', pfx .. H_REVENUE .. cur .. SEP .. name)
    end
  end
  for k = 1, #PREV_KINDS do
    redis.call('UNLINK', pfx .. H_PREV .. string.lower(string.sub(PREV_KINDS, k, k)) .. name)
  end
  for k = 1, #NEW_KINDS do
    redis.call('UNLINK', pfx .. H_NEW .. string.lower(string.sub(NEW_KINDS, k, k)) .. name)
  end
  redis.call('UNLINK', pfx .. H_ORDERS .. name, ht)
end
