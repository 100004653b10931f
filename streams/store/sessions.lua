-- storepulse: sessions in event time, loaded in front of apply_batch.lua (same call, same slot).
--
-- Names come from the header (K_*, S_*, R_*, A_*, T_*) and from the table SK that
-- streams/store/session_keys.py renders: this file spells none itself.
--
-- Per accepted event, track() keeps what the session's figures are computed from (first and
-- last ts, visits, the latest event with a customer by (ts, event_id), the cart's add and
-- remove events) and keeps the session in K_SESSIONS scored by its end (last ts + timeout).
-- After the batch, end_sessions() pops the sessions whose end < the new watermark (a range
-- read of K_SESSIONS: no timer, no scan of the other sessions), computes their figures from
-- that state, adds them to the bucket of end and remembers what it added (SK.CONTRIB). A
-- late event of an ended session takes its contribution back (withdraw) and puts the session
-- back in K_SESSIONS: it ends again, in the same call when its end is still below the
-- watermark, with figures recomputed from all its events (docs/semantics.md, "Sessions and
-- carts"). The state goes when the watermark passes end + the allowed lateness.

-- With A_SESSION_FIGURES = 0 (STOREPULSE_SESSION_FIGURES=false, the bench's baseline) only the
-- funnel's own session bookkeeping runs, as before sessions ended: K_SESSIONS by newest ts,
-- evicted past the horizon. A deployment does not switch between the two.
local sessions_on = tonumber(ARGV[A_SESSION_FIGURES]) == 1
local session_timeout = tonumber(ARGV[A_SESSION_TIMEOUT_MS])
local session_bucket_ms = tonumber(ARGV[A_BUCKET_MS])
local session_buckets = {}
local reopened = {}

local function end_bucket(endt)
  local b = string.format('%d', math.floor(endt / session_bucket_ms) * (session_bucket_ms / 1000))
  session_buckets[b] = true
  return b
end

-- Exact non-negative integers of any size as little-endian limbs of 7 digits.
local LIMB = 10000000
local function limbs(text)
  local out = {}
  local j = #text
  while j >= 1 do
    local from = math.max(1, j - 6)
    out[#out + 1] = tonumber(string.sub(text, from, j))
    j = from - 1
  end
  return out
end

local function carry_into(out, k, carry)
  while carry > 0 do
    local t = (out[k] or 0) + carry
    carry = math.floor(t / LIMB)
    out[k] = t - carry * LIMB
    k = k + 1
  end
end

local function limbs_mul(a, b)
  local out = {}
  for k = 1, #a + #b do
    out[k] = 0
  end
  for x = 1, #a do
    local carry = 0
    for y = 1, #b do
      local t = out[x + y - 1] + a[x] * b[y] + carry
      carry = math.floor(t / LIMB)
      out[x + y - 1] = t - carry * LIMB
    end
    carry_into(out, x + #b, carry)
  end
  return out
end

local function limbs_add(a, b)
  local out, carry = {}, 0
  for k = 1, math.max(#a, #b) do
    local t = (a[k] or 0) + (b[k] or 0) + carry
    carry = math.floor(t / LIMB)
    out[k] = t - carry * LIMB
  end
  carry_into(out, #out + 1, carry)
  return out
end

local function limbs_text(a)
  local top = #a
  while top > 1 and a[top] == 0 do
    top = top - 1
  end
  local parts = {string.format('%d', a[top] or 0)}
  for k = top - 1, 1, -1 do
    parts[#parts + 1] = string.format(SK.LIMB_FORMAT, a[k])
  end
  return table.concat(parts)
end

-- Redis reads "-0" as no integer: zero stays unsigned.
local function signed(units, sign)
  if sign < 0 and units ~= '0' then
    return SK.MINUS .. units
  end
  return units
end

-- The cart of a session: per sku, its add and remove events in (ts, event_id) order; each add
-- adds its quantity and sets the unit price, each removal subtracts, never below zero.
-- Returns {currency = value text}, the items held, and whether a value is too large to sum.
local function cart_of(ck)
  local raw = redis.call('HGETALL', ck)
  local by_sku = {}
  for j = 1, #raw, 2 do
    local f, v = raw[j], raw[j + 1]
    local c1 = string.find(f, SK.ENTRY_SEP, 1, true)
    local n = tonumber(string.sub(f, 1, c1 - 1))
    local sku = string.sub(f, c1 + 1, c1 + n)
    local rest = string.sub(f, c1 + n + 1)
    local c2 = string.find(rest, SK.ENTRY_SEP, 1, true)
    local d1 = string.find(v, SK.ENTRY_SEP, 1, true)
    local d2 = string.find(v, SK.ENTRY_SEP, d1 + 1, true)
    local list = by_sku[sku]
    if not list then
      list = {}
      by_sku[sku] = list
    end
    list[#list + 1] = {
      ts = tonumber(string.sub(rest, 1, c2 - 1)),
      eid = string.sub(rest, c2 + 1),
      delta = tonumber(string.sub(v, 1, d1 - 1)),
      price = string.sub(v, d1 + 1, d2 - 1),
      cur = string.sub(v, d2 + 1),
    }
  end
  local function before(x, y)
    if x.ts ~= y.ts then
      return x.ts < y.ts
    end
    return bytes_before(x.eid, y.eid)
  end
  local sums, items = {}, {}
  local skus = {}
  for sku, _ in pairs(by_sku) do
    skus[#skus + 1] = sku
  end
  table.sort(skus, bytes_before)
  for _, sku in ipairs(skus) do
    local list = by_sku[sku]
    table.sort(list, before)
    local qty, price, cur = 0, nil, nil
    for _, e in ipairs(list) do
      if e.delta > 0 then
        qty, price, cur = qty + e.delta, e.price, e.cur
      else
        qty = math.max(0, qty + e.delta)
      end
    end
    if qty > 0 and price then
      local q = string.format('%d', qty)
      items[#items + 1] = {sku, q, price, cur}
      sums[cur] = limbs_add(sums[cur] or {0}, limbs_mul(limbs(q), limbs(price)))
    end
  end
  local values, too_large = {}, false
  for cur, sum in pairs(sums) do
    values[cur] = limbs_text(sum)
    too_large = too_large or #values[cur] > SK.MAX_DIGITS
  end
  return values, items, too_large
end

-- Add (sign 1) or take back (-1) a session's figures in the bucket of its end.
local function contribute(pfx, c, sign)
  local bk = pfx .. K_BUCKET .. c.b
  local seg = SEP .. c.ch .. SEP .. c.dev
  local cty = SEP .. c.cty
  local plain = {
    {SK.B_ENDED, 1},
    {SK.B_BOUNCED, c.bounce},
    {SK.B_MS, c.ms},
    {SK.B_PAGES, c.pages},
    {SK.B_ABANDONED, c.ab},
  }
  for _, kv in ipairs(plain) do
    if kv[2] ~= 0 then
      local by = string.format('%d', kv[2] * sign)
      redis.call('HINCRBY', bk, kv[1] .. seg, by)
      redis.call('HINCRBY', bk, kv[1] .. SK.COUNTRY .. cty, by)
    end
  end
  if c.ab == 1 and not c.big then
    for cur, units in pairs(c.v) do
      local by = signed(units, sign)
      redis.call('HINCRBY', bk, SK.B_VALUE .. SEP .. cur .. seg, by)
      redis.call('HINCRBY', bk, SK.B_VALUE .. SK.COUNTRY .. SEP .. cur .. cty, by)
    end
  end
end

-- A new accepted event of the session (the funnel counted it already).
local function track(pfx, sk, sid, ev, i, ts, stage)
  if not sessions_on then
    redis.call('ZADD', pfx .. K_SESSIONS, 'GT', ts, sid)
    return
  end
  local st = redis.call('HMGET', sk, SK.FIRST, SK.LAST, SK.CONTRIB, SK.CUST_TS, SK.CUST_EID)
  local first, last = tonumber(st[1]), tonumber(st[2])
  if st[3] then
    -- Ended already: its figures are taken back; it ends again from all its events.
    local c = cjson.decode(st[3])
    contribute(pfx, c, -1)
    end_bucket(c.e)
    redis.call('HDEL', sk, SK.CONTRIB)
    if c.ab == 1 then
      redis.call('HDEL', pfx .. SK.DETAILS, sid)
      redis.call('ZREM', pfx .. SK.CARTS, sid)
    end
    reopened[sid] = true
  end
  local set = {}
  if not first or ts < first then
    set[#set + 1] = SK.FIRST
    set[#set + 1] = ev[i + R_TS_MS]
  end
  local new_last = last
  if not last or ts > last then
    new_last = ts
    set[#set + 1] = SK.LAST
    set[#set + 1] = ev[i + R_TS_MS]
  end
  local cust, eid = ev[i + R_CUSTOMER], ev[i + R_EVENT_ID]
  if cust ~= '' then
    local cts = tonumber(st[4])
    if not cts or ts > cts or (ts == cts and bytes_before(st[5], eid)) then
      set[#set + 1] = SK.CUST_TS
      set[#set + 1] = ev[i + R_TS_MS]
      set[#set + 1] = SK.CUST_EID
      set[#set + 1] = eid
      set[#set + 1] = SK.CUST
      set[#set + 1] = cjson.encode({cust, ev[i + R_ACCOUNT_ID], ev[i + R_USER_ID]})
    end
  end
  if #set > 0 then
    redis.call('HSET', sk, unpack(set))
  end
  if stage == 0 then
    redis.call('HINCRBY', sk, SK.VISITS, 1)
  end
  local sku = ev[i + R_SKU]
  if sku ~= '' then
    -- stage 1 is add_to_cart; a removal reaches no stage.
    local qty = ev[i + R_QUANTITY]
    local change
    if stage == 1 then
      change = qty .. SK.ENTRY_SEP .. ev[i + R_PRICE_UNITS] .. SK.ENTRY_SEP .. ev[i + R_CURRENCY]
    else
      change = SK.MINUS .. qty .. SK.ENTRY_SEP .. SK.ENTRY_SEP
    end
    local entry = string.format('%d', #sku) .. SK.ENTRY_SEP .. sku .. ev[i + R_TS_MS]
    redis.call('HSET', pfx .. SK.CART .. sid, entry .. SK.ENTRY_SEP .. eid, change)
  end
  if new_last ~= last or st[3] then
    redis.call('ZADD', pfx .. K_SESSIONS, new_last + session_timeout, sid)
  end
end

-- The cart fact the customer stage should hold for the session (nil: none); emitted when it
-- differs from the last one, with the session's next version (deterministic from its hash).
local function cart_facts(sk, sid, wanted, out)
  local last = redis.call('HGET', sk, SK.CART_FACT)
  local want = wanted and cjson.encode(wanted) or false
  if (last or false) == want then
    return
  end
  local old = last and cjson.decode(last)
  if old and (not wanted or old[1] ~= wanted[1]) then
    local v = redis.call('HINCRBY', sk, SK.CART_VERSION, 1)
    out[#out + 1] = old[1]
    out[#out + 1] = cjson.encode({FACT_CART, old[1], sid, string.format('%d', v), '', '', '', ''})
  end
  if wanted then
    local v = redis.call('HINCRBY', sk, SK.CART_VERSION, 1)
    out[#out + 1] = wanted[1]
    out[#out + 1] = cjson.encode(
      {FACT_CART, wanted[1], sid, string.format('%d', v), wanted[2], wanted[3], wanted[4],
       wanted[5]})
    redis.call('HSET', sk, SK.CART_FACT, want)
  else
    redis.call('HDEL', sk, SK.CART_FACT)
  end
end

local function duration_bin(ms)
  local k = 0
  for bound in string.gmatch(SK.DURATIONS, SK.LIST_ITEM) do
    if ms <= tonumber(bound) * 1000 then
      return k
    end
    k = k + 1
  end
  return k
end

-- The session ended (its end < the watermark): its figures into the bucket of its end.
local function close(pfx, tot, sid, facts_on, out)
  local sk = pfx .. K_SESSION .. sid
  local st = redis.call('HMGET', sk, S_SEGMENT, S_COUNT, SK.FIRST, SK.LAST, SK.VISITS,
    S_STAGE_TIME .. 1, SK.ORDERS, SK.CUST, SK.SEEN)
  local sz = pfx .. K_SESSIONS
  local score = redis.call('ZSCORE', sz, sid)
  redis.call('ZREM', sz, sid)
  if not st[4] then
    -- Kept by an older version (no figures): evicted in time like the others.
    redis.call('ZADD', pfx .. SK.ENDED, score, sid)
    return
  end
  local ch, dev, cty = string.match(st[1], SEGMENT_PATTERN)
  local first, last, visits = tonumber(st[3]), tonumber(st[4]), tonumber(st[5] or '0')
  local endt = last + session_timeout
  local c = {
    e = endt, b = end_bucket(endt), ch = ch, dev = dev, cty = cty,
    bounce = (tonumber(st[2]) == 1 and visits == 1) and 1 or 0,
    ms = last - first, pages = visits,
    ab = (st[6] and tonumber(st[7] or '0') == 0) and 1 or 0, v = {},
  }
  local items = {}
  if c.ab == 1 then
    c.v, items, c.big = cart_of(pfx .. SK.CART .. sid)
  end
  contribute(pfx, c, 1)
  redis.call('HSET', sk, SK.CONTRIB, cjson.encode(c))
  redis.call('ZADD', pfx .. SK.ENDED, endt, sid)
  -- Cumulative counters: once, when first seen (they never move).
  local seen = st[9] or ''
  local seg = SEP .. ch .. SEP .. dev
  if not string.find(seen, SK.SEEN_ENDED, 1, true) then
    seen = seen .. SK.SEEN_ENDED
    redis.call('HINCRBY', tot, SK.T_ENDED .. seg, 1)
    redis.call('HINCRBY', tot, SK.T_DURATION .. SEP .. duration_bin(c.ms), 1)
    redis.call('HINCRBY', tot, SK.T_DURATION_SUM, c.ms)
  end
  if c.bounce == 1 and not string.find(seen, SK.SEEN_BOUNCED, 1, true) then
    seen = seen .. SK.SEEN_BOUNCED
    redis.call('HINCRBY', tot, SK.T_BOUNCED .. seg, 1)
  end
  if c.ab == 1 and not string.find(seen, SK.SEEN_ABANDONED, 1, true) then
    seen = seen .. SK.SEEN_ABANDONED
    redis.call('HINCRBY', tot, SK.T_ABANDONED .. seg, 1)
    if c.big then
      redis.call('HINCRBY', tot, SK.T_VALUE_OVERFLOW, 1)
    else
      for cur, units in pairs(c.v) do
        redis.call('HINCRBY', tot, SK.T_VALUE .. SEP .. cur, units)
      end
    end
  end
  redis.call('HSET', sk, SK.SEEN, seen)
  local who = st[8] and cjson.decode(st[8])
  local wanted = nil
  if c.ab == 1 then
    local cust = who or {'', '', ''}
    redis.call('HSET', pfx .. SK.DETAILS, sid, cjson.encode({
      cust[1], cust[2], cust[3], ch, dev, string.format('%d', endt), c.v, items}))
    redis.call('ZADD', pfx .. SK.CARTS, endt, sid)
    if who then
      wanted = {who[1], string.format('%d', endt), ch, dev, cty}
    end
  end
  if facts_on then
    cart_facts(sk, sid, wanted, out)
  end
end

-- After the batch's events: end what the watermark passed, evict what it passed by the
-- lateness, expire listed carts. Returns the cart facts as (customer, fact JSON) pairs.
local function end_sessions(pfx, tot, facts_on)
  local wm = ARGV[A_WATERMARK_MS]
  local out = {}
  if not sessions_on then
    local sz = pfx .. K_SESSIONS
    local old = redis.call('ZRANGEBYSCORE', sz, '-inf', '(' .. ARGV[A_SESSION_HORIZON_MS],
      'LIMIT', 0, SK.EVICT_LIMIT)
    for _, sid in ipairs(old) do
      redis.call('DEL', pfx .. K_SESSION .. sid)
      redis.call('ZREM', sz, sid)
    end
    return out
  end
  local ended = {}
  local due = redis.call('ZRANGEBYSCORE', pfx .. K_SESSIONS, '-inf', '(' .. wm, 'LIMIT', 0,
    SK.END_LIMIT)
  for _, sid in ipairs(due) do
    close(pfx, tot, sid, facts_on, out)
    ended[sid] = true
  end
  if facts_on then
    for sid, _ in pairs(reopened) do
      if not ended[sid] then
        -- Its end moved past the watermark: not an abandoned cart (yet).
        cart_facts(pfx .. K_SESSION .. sid, sid, nil, out)
      end
    end
  end
  -- State of ended sessions goes once the watermark passes end + the allowed lateness: an
  -- event of theirs would be older than the watermark minus the lateness, rejected late.
  local horizon = tonumber(ARGV[A_SESSION_HORIZON_MS]) + session_timeout
  local ez = pfx .. SK.ENDED
  local old = redis.call('ZRANGEBYSCORE', ez, '-inf', '(' .. string.format('%d', horizon),
    'LIMIT', 0, SK.EVICT_LIMIT)
  for _, sid in ipairs(old) do
    redis.call('ZREM', ez, sid)
    if not redis.call('ZSCORE', pfx .. K_SESSIONS, sid) then
      redis.call('DEL', pfx .. K_SESSION .. sid, pfx .. SK.CART .. sid)
    end
  end
  local listed = pfx .. SK.CARTS
  local expired = redis.call('ZRANGEBYSCORE', listed, '-inf',
    '(' .. string.format('%d', tonumber(wm) - tonumber(ARGV[A_RECOVERY_MS])), 'LIMIT', 0,
    SK.EVICT_LIMIT)
  for _, sid in ipairs(expired) do
    redis.call('ZREM', listed, sid)
    redis.call('HDEL', pfx .. SK.DETAILS, sid)
  end
  local bz = pfx .. K_BUCKETS
  for b, _ in pairs(session_buckets) do
    redis.call('ZADD', bz, 'NX', b, b)
  end
  return out
end
