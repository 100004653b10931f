-- storepulse: read the account views of one customer partition for a range of whole hours.
--
-- ARGV: account_keys.QueryArgs (Q_PREFIX .. Q_RISK_FACTOR), then the mode's arguments:
--   rank  key n scope currency: the range's totals and the top n accounts by key (n = 0:
--         all, packed), by revenue in each currency of the partition (or in currency, when
--         given); scope: the accounts active in the range, or those at risk at to
--   rows  account...: the raw data of each account for the range (contract/accounts.py)
--   reps  prev_from users: per-account flags and sums for the range and [prev_from, from),
--         packed, for the per-rep and per-tier roll-ups
-- Packed lists: records separated by PACK_RECORD, fields by PACK_FIELD (bytes no UTF-8 text
-- holds). Temporary keys (K_QUERY) live inside this call only: it deletes them before it returns.
-- Key and field names come from the headers of customer_keys.py and account_keys.py.

local pfx = ARGV[Q_PREFIX]
local mode = ARGV[Q_MODE]
local from_s, to_s = tonumber(ARGV[Q_FROM_S]), tonumber(ARGV[Q_TO_S])
local to_ms = to_s * 1000
local p = tonumber(ARGV[Q_RISK_FACTOR])
local arg0 = Q_RISK_FACTOR
local temps = {}

local function temp(name)
  local key = pfx .. K_QUERY .. name
  temps[#temps + 1] = key
  return key
end

-- The period names covering [a, b) (whole hours): the hours before the first whole day, the
-- whole days, the hours after the last one: at most 46 hours and the days between.
local function spans(a, b)
  local out = {}
  local first = a + (DAY_S - a % DAY_S) % DAY_S
  local last = b - b % DAY_S
  if first >= last then
    for h = a, b - HOUR_S, HOUR_S do
      out[#out + 1] = G_1 .. PSEP .. h
    end
    return out
  end
  for h = a, first - HOUR_S, HOUR_S do
    out[#out + 1] = G_1 .. PSEP .. h
  end
  for d = first, last - DAY_S, DAY_S do
    out[#out + 1] = G_2 .. PSEP .. d
  end
  for h = last, b - HOUR_S, HOUR_S do
    out[#out + 1] = G_1 .. PSEP .. h
  end
  return out
end

-- Every hour of [a, b): the new-kinds counts are kept per hour only.
local function hours(a, b)
  local out = {}
  for h = a, b - HOUR_S, HOUR_S do
    out[#out + 1] = G_1 .. PSEP .. h
  end
  return out
end

local function hour_keys(kind, hrs)
  local out = {}
  for _, name in ipairs(hrs) do
    out[#out + 1] = pfx .. kind .. name
  end
  return out
end

-- dest = the weighted union of srcs ({key, weight} pairs, dest itself may be one), 1,000 keys
-- per command (ZUNIONSTORE replaces dest).
local function zunion(dest, srcs)
  if #srcs == 0 then
    redis.call('DEL', dest)
  end
  local i = 1
  while i <= #srcs do
    local ks, ws = {}, {}
    if i > 1 then
      ks[1], ws[1] = dest, 1
    end
    for k = i, math.min(#srcs, i + 999) do
      ks[#ks + 1], ws[#ws + 1] = srcs[k][1], srcs[k][2]
    end
    local args = {dest, #ks}
    for _, k in ipairs(ks) do
      args[#args + 1] = k
    end
    args[#args + 1] = 'WEIGHTS'
    for _, w in ipairs(ws) do
      args[#args + 1] = w
    end
    redis.call('ZUNIONSTORE', unpack(args))
    i = i + 1000
  end
end

local function weighted(keys_, w)
  local out = {}
  for _, k in ipairs(keys_) do
    out[#out + 1] = {k, w}
  end
  return out
end

-- The account of a per-hour member "<len>:<account><item>".
local function account_of(member)
  local colon = string.find(member, ITEM_SEP, 1, true)
  local n = tonumber(string.sub(member, 1, colon - 1))
  return string.sub(member, colon + 1, colon + n)
end

local function add_members(key, members, score)
  for i = 1, #members, 1000 do
    local args = {}
    for k = i, math.min(#members, i + 999) do
      args[#args + 1] = score
      args[#args + 1] = members[k]
    end
    redis.call('ZADD', key, unpack(args))
  end
end

-- Distinct members of a point kind with a point in the range: their first point in it is the
-- one whose previous point is before from (one per member).
local function count_distinct(kind, hrs)
  local n = 0
  for _, name in ipairs(hrs) do
    n = n + redis.call('ZCOUNT', pfx .. H_PREV .. kind .. name, '-inf', '(' .. from_s)
  end
  return n
end

-- Per account, the distinct items of a kind with a point in [from, to): those first seen in
-- it (the n<kind> counts) plus those seen before from too (previous point before from).
local function per_account_distinct(dest, kind, hrs)
  zunion(dest, weighted(hour_keys(H_NEW .. kind, hrs), 1))
  local extra = {}
  for _, name in ipairs(hrs) do
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', pfx .. H_PREV .. kind .. name, 0,
      '(' .. from_s)) do
      local a = account_of(m)
      extra[a] = (extra[a] or 0) + 1
    end
  end
  for a, n in pairs(extra) do
    redis.call('ZINCRBY', dest, n, a)
  end
end

local function detail_m2(a, oid)
  local raw = redis.call('HGET', pfx .. K_ADETAILS .. a, oid)
  local _, _, _, _, _, m2 = string.match(raw, ADETAIL_PATTERN)
  return m2
end

-- Is account a at risk at to, by its orders before to (the reader's factor)?
local function risk_at(a)
  local ao = pfx .. K_AORDERS .. a
  if redis.call('ZCOUNT', ao, '-inf', '(' .. to_ms) < 3 then
    return false
  end
  local last = redis.call('ZREVRANGEBYSCORE', ao, '(' .. to_ms, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
  local m2 = detail_m2(a, last[1])
  local start = m2 ~= '' and risk_start(tonumber(last[2]), tonumber(m2), p)
  return start and to_ms >= start or false
end

-- The accounts at risk at to: from the index when it was built with the reader's factor
-- (those whose last order is before to), else one by one; and those ordering after to.
local function at_risk_members()
  local out = {}
  local candidates
  if redis.call('HGET', pfx .. K_META, M_RISK) == ARGV[Q_RISK_FACTOR] then
    for _, a in ipairs(redis.call('ZRANGEBYSCORE', pfx .. K_ARISK, '-inf', to_ms)) do
      out[#out + 1] = a
    end
    candidates = redis.call('ZRANGEBYSCORE', pfx .. K_ALAST_T, to_ms, '+inf')
  else
    candidates = redis.call('ZRANGE', pfx .. K_ALAST_T, 0, -1)
  end
  for _, a in ipairs(candidates) do
    if risk_at(a) then
      out[#out + 1] = a
    end
  end
  return out
end

local function history_of(a)
  return redis.call('HGET', pfx .. K_CUSTOMER .. a, C_HISTORY)
end

-- The last order of account a before to (tracked, or an instant its history names), or nil.
local function last_before_to(a)
  local best
  local last = redis.call('ZREVRANGEBYSCORE', pfx .. K_AORDERS .. a, '(' .. to_ms, '-inf',
    'WITHSCORES', 'LIMIT', 0, 1)
  if last[1] then
    best = tonumber(last[2])
  end
  local hist = history_of(a)
  if hist then
    local _, f, l = string.match(hist, HISTORY_PATTERN)
    for _, t in ipairs({tonumber(f), tonumber(l)}) do
      if t < to_ms and (not best or t > best) then
        best = t
      end
    end
  end
  return best
end

local function pack_zset(key)
  local flat = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local lines = {}
  for k = 1, #flat, 2 do
    lines[#lines + 1] = flat[k] .. PACK_FIELD .. flat[k + 1]
  end
  return table.concat(lines, PACK_RECORD)
end

-- The range's revenue per currency, exact: each value split into its last 8 digits and the
-- rest, summed apart (doubles stay exact integers), joined again by the reader.
local function hour_totals(hrs)
  local orders, hi, lo, out = 0, {}, {}, {}
  for _, name in ipairs(hrs) do
    local row = redis.call('HGETALL', pfx .. H_TOTALS .. name)
    for k = 1, #row, 2 do
      if row[k] == HT_ORDERS then
        orders = orders + tonumber(row[k + 1])
      else
        local cur = string.sub(row[k], #HT_REVENUE + #SEP + 1)
        local v = row[k + 1]
        hi[cur] = (hi[cur] or 0) + (tonumber(string.sub(v, 1, -9)) or 0)
        lo[cur] = (lo[cur] or 0) + tonumber(string.sub(v, -8))
      end
    end
  end
  for cur, h in pairs(hi) do
    out[#out + 1] = cur
    out[#out + 1] = string.format('%d', h)
    out[#out + 1] = string.format('%d', lo[cur])
  end
  return orders, out
end

local function new_accounts(members)
  local seen_new
  if members then
    seen_new = redis.call('ZRANGEBYSCORE', pfx .. K_AFIRST, from_s * 1000, '(' .. to_ms)
  else
    seen_new = redis.call('ZCOUNT', pfx .. K_AFIRST, from_s * 1000, '(' .. to_ms)
  end
  local unseen = {}
  for _, c in ipairs(redis.call('ZRANGEBYSCORE', pfx .. K_HFIRST, from_s * 1000, '(' .. to_ms)) do
    if redis.call('SISMEMBER', pfx .. K_ACCOUNTS, c) == 0 then
      unseen[#unseen + 1] = c
    end
  end
  return seen_new, unseen
end

-- The ranking's scores: t holds every account in scope with its key; nulls those whose key
-- is null (last_order_at only). The accounts in scope come from the sources themselves when
-- every one of them has a score there (revenue and orders: ordering accounts are active); the
-- union of the range's active accounts (base) is made only when zeros must be listed too.
local function ranked(key, scope_base, hrs, every, currency, n)
  local t, nulls = temp(TMP_SCORES), temp(TMP_NULLS)
  redis.call('DEL', nulls)
  if key == SORT_REVENUE or key == SORT_ORDERS then
    local kind = key == SORT_ORDERS and H_ORDERS or (H_REVENUE .. currency .. SEP)
    zunion(t, weighted(hour_keys(kind, hrs), 1))
  elseif key == SORT_SESSIONS or key == SORT_USERS then
    local kind = key == SORT_SESSIONS and string.lower(PK_SESSION) or string.lower(PK_USER)
    per_account_distinct(t, kind, every)
  else
    redis.call('ZINTERSTORE', t, 2, scope_base(), pfx .. K_ALAST, 'WEIGHTS', 0, 1)
    for _, a in ipairs(redis.call('ZRANGEBYSCORE', t, to_ms, '+inf')) do
      local best = last_before_to(a)
      if best then
        redis.call('ZADD', t, best, a)
      else
        redis.call('ZREM', t, a)
      end
    end
    redis.call('ZDIFFSTORE', nulls, 2, scope_base(), t)
    return t, nulls
  end
  local scoped = scope_base(true)
  if scoped then
    redis.call('ZINTERSTORE', t, 2, t, scoped, 'WEIGHTS', 1, 0)
  end
  if n == 0 or redis.call('ZCARD', t) < n then
    zunion(t, {{t, 1}, {scope_base(), 0}})
  end
  return t, nulls
end

-- The top n of t by (score descending, account ascending), then nulls by account.
local function top(t, nulls, n)
  local out = {}
  local total = redis.call('ZCARD', t)
  if total >= n then
    local nth = redis.call('ZREVRANGE', t, n - 1, n - 1, 'WITHSCORES')[2]
    local above = redis.call('ZREVRANGEBYSCORE', t, '+inf', '(' .. nth, 'WITHSCORES')
    for _, v in ipairs(above) do
      out[#out + 1] = v
    end
    local ties = redis.call('ZRANGEBYSCORE', t, nth, nth, 'WITHSCORES', 'LIMIT', 0, n - #above / 2)
    for _, v in ipairs(ties) do
      out[#out + 1] = v
    end
    return out
  end
  out = redis.call('ZRANGE', t, 0, -1, 'WITHSCORES')
  for _, a in ipairs(redis.call('ZRANGE', nulls, 0, n - total - 1)) do
    out[#out + 1] = a
    out[#out + 1] = ''
  end
  return out
end

local function packed(t, nulls)
  local rest = redis.call('ZRANGE', nulls, 0, -1)
  local text = pack_zset(t)
  if #rest > 0 then
    local tail = table.concat(rest, PACK_FIELD .. PACK_RECORD) .. PACK_FIELD
    text = text == '' and tail or (text .. PACK_RECORD .. tail)
  end
  return {text}
end

local function rank()
  local key, n, scope, only = ARGV[arg0 + 1], tonumber(ARGV[arg0 + 2]), ARGV[arg0 + 3],
    ARGV[arg0 + 4]
  local hrs, every = spans(from_s, to_s), hours(from_s, to_s)
  local risky = at_risk_members()
  local seen_new, unseen = new_accounts(false)
  local orders, revenue = hour_totals(hrs)
  local counts = {
    count_distinct(string.lower(PK_ACCOUNT), hrs),
    count_distinct(string.lower(PK_ORDERING), hrs),
    count_distinct(string.lower(PK_USER), hrs),
    count_distinct(string.lower(PK_OUSER), hrs),
    count_distinct(string.lower(PK_SESSION), hrs),
    orders,
    seen_new,
    #risky,
  }
  local base = temp(TMP_BASE)
  local built = false
  -- The accounts in scope, made on first use; with only_narrowing, nil for the active ones
  -- (every source holds active accounts only).
  local function scope_base(only_narrowing)
    if only_narrowing and scope ~= SCOPE_AT_RISK then
      return nil
    end
    if not built then
      built = true
      redis.call('DEL', base)
      if scope == SCOPE_AT_RISK then
        add_members(base, risky, 0)
      else
        zunion(base, weighted(hour_keys(H_PREV .. string.lower(PK_ACCOUNT), hrs), 0))
      end
    end
    return base
  end
  -- Revenue ranks per currency: the reader picks the range's main one (summed everywhere).
  local currencies = {''}
  if only ~= '' then
    currencies = {only}
  elseif key == SORT_REVENUE and #revenue > 0 then
    currencies = {}
    for i = 1, #revenue, 3 do
      currencies[#currencies + 1] = revenue[i]
    end
  end
  local chosen = {}
  for _, cur in ipairs(currencies) do
    local t, nulls = ranked(key, scope_base, hrs, every, cur, n)
    chosen[#chosen + 1] = cur
    chosen[#chosen + 1] = n > 0 and top(t, nulls, n) or packed(t, nulls)
  end
  return {counts, revenue, unseen, chosen}
end

local function rows()
  local from_ms = from_s * 1000
  local out = {}
  for k = arg0 + 1, #ARGV do
    local a = ARGV[k]
    local ap, ao, ad = pfx .. K_APOINTS .. a, pfx .. K_AORDERS .. a, pfx .. K_ADETAILS .. a
    local lo = PT_HOUR .. PT_PAIR .. string.format(HOUR_FORMAT, from_s)
    local hi = PT_HOUR .. PT_PAIR .. string.format(HOUR_FORMAT, to_s)
    local pairs_ = redis.call('ZRANGE', ap, '[' .. lo, '(' .. hi, 'BYLEX')
    local ids = redis.call('ZRANGEBYSCORE', ao, from_ms, '(' .. to_ms)
    local orders = {}
    for _, oid in ipairs(ids) do
      orders[#orders + 1] = oid
      orders[#orders + 1] = redis.call('HGET', ad, oid)
    end
    local last = redis.call('ZREVRANGEBYSCORE', ao, '(' .. to_ms, '-inf', 'WITHSCORES',
      'LIMIT', 0, 1)
    local first = redis.call('ZRANGE', ao, 0, 0, 'WITHSCORES')
    out[#out + 1] = {
      a,
      redis.call('SISMEMBER', pfx .. K_ACCOUNTS, a),
      redis.call('ZCOUNT', ao, '-inf', '(' .. to_ms),
      last[2] or '',
      last[1] and detail_m2(a, last[1]) or '',
      first[2] or '',
      history_of(a) or '',
      pairs_,
      orders,
    }
  end
  return out
end

local function reps()
  local prev_from, users = tonumber(ARGV[arg0 + 1]), tonumber(ARGV[arg0 + 2]) == 1
  local hrs, every = spans(from_s, to_s), hours(from_s, to_s)
  local before = spans(prev_from, from_s)
  local active, ordering = temp(TMP_ACTIVE), temp(TMP_ORDERING)
  zunion(active, weighted(hour_keys(H_PREV .. string.lower(PK_ACCOUNT), hrs), 0))
  zunion(ordering, weighted(hour_keys(H_ORDERS, hrs), 0))
  local seen_new, unseen = new_accounts(true)
  local out = {
    pack_zset(active),
    pack_zset(ordering),
    table.concat(seen_new, PACK_RECORD),
    table.concat(unseen, PACK_RECORD),
    table.concat(at_risk_members(), PACK_RECORD),
    table.concat(redis.call('SMEMBERS', pfx .. K_ACCOUNTS), PACK_RECORD),
  }
  local sums = temp(TMP_SUMS)
  for _, range in ipairs({hrs, before}) do
    zunion(sums, weighted(hour_keys(H_ORDERS, range), 1))
    out[#out + 1] = pack_zset(sums)
    local currencies = {}
    for _, name in ipairs(range) do
      for _, f in ipairs(redis.call('HKEYS', pfx .. H_TOTALS .. name)) do
        if f ~= HT_ORDERS then
          currencies[string.sub(f, #HT_REVENUE + #SEP + 1)] = true
        end
      end
    end
    local by_currency = {}
    for cur, _ in pairs(currencies) do
      zunion(sums, weighted(hour_keys(H_REVENUE .. cur .. SEP, range), 1))
      by_currency[#by_currency + 1] = cur
      by_currency[#by_currency + 1] = pack_zset(sums)
    end
    out[#out + 1] = by_currency
  end
  if users then
    per_account_distinct(sums, string.lower(PK_USER), every)
    out[#out + 1] = pack_zset(sums)
    per_account_distinct(sums, string.lower(PK_OUSER), every)
    out[#out + 1] = pack_zset(sums)
  end
  return out
end

local reply
if mode == MODE_RANK then
  reply = rank()
elseif mode == MODE_ROWS then
  reply = rows()
elseif mode == MODE_REPS then
  reply = reps()
end
for _, key in ipairs(temps) do
  redis.call('DEL', key)
end
return reply
