-- storepulse: sessions in event time, loaded in front of apply_batch.lua (same call, same slot).
--
-- Names come from the header (K_*, S_*, R_*, A_*, T_*) and from the table SK that
-- streams/store/session_keys.py renders: this file spells none itself.
--
-- Per accepted event, track() keeps what the session's figures are computed from: its event
-- count (S_COUNT, the funnel's) and the events that are not visits (visits = the count - those;
-- few batches of a session have another event), the latest event with a customer by (ts,
-- event_id), the cart's add and remove events, and the session in K_SESSIONS scored by its
-- last ts (ZADD GT; it ends when last + the timeout < the watermark). Its first ts is the
-- funnel's first stage time (every event but a removal reaches stage 0) or an earlier
-- removal's (SK.FIRST). A Redis call from Lua costs 1-4 us here, a JSON encode 4 us, a field
-- read 0.3 us (docs/benchmarks.md): so track() reads a session once per batch, in the funnel's
-- own HMGET (TRACK_FIELDS) and the cap's (held_count), and flush_tracked() writes it once per
-- batch (counts, a min, a max and a latest: the same in any order), one HSET per session and
-- one ZADD for all of them.
-- After the batch, end_sessions() pops the sessions whose end < the new watermark (a range
-- read of K_SESSIONS: no timer, no scan of the other sessions), computes their figures from
-- that state, adds them to the bucket of end (summed per segment over the call first; hashes of
-- their own, SK.BUCKET and SK.TOTALS, not the funnel's) and remembers what it added
-- (SK.CONTRIB). A late event of an ended session takes its contribution back (withdraw) and
-- puts the session back in K_SESSIONS: it ends again, in the same call when its end is still
-- below the watermark, with figures recomputed from all its events (docs/semantics.md,
-- "Sessions and carts"). The state goes when the watermark passes end + the allowed lateness.

-- With A_SESSION_FIGURES = 0 (STOREPULSE_SESSION_FIGURES=false, the bench's baseline) only the
-- funnel's own session bookkeeping runs, as before sessions ended: K_SESSIONS by newest ts,
-- evicted past the horizon. A deployment does not switch between the two.
local sessions_on = tonumber(ARGV[A_SESSION_FIGURES]) == 1
local session_timeout = tonumber(ARGV[A_SESSION_TIMEOUT_MS])
local session_bucket_ms = tonumber(ARGV[A_BUCKET_MS])
local session_buckets, bucket_texts = {}, {}
local reopened = {}
-- What track() read and changed of each session of the batch, flushed before they end.
local tracked, tracked_order = {}, {}
-- The fields track() reads, after the funnel's, the first time the batch meets a session,
-- and the fields a new session's hash starts with (SK.MARK: kept with figures).
local TRACK_FIELDS, NEW_SESSION_FIELDS = {}, {}
if sessions_on then
  TRACK_FIELDS = {SK.CONTRIB, SK.CUST_TS, SK.CUST_EID}
  NEW_SESSION_FIELDS = {SK.MARK, SK.ON}
end

-- A field of the session hash that holds something: a field emptied ('') is none, as a missing
-- one (an HSET in the call's one write of the session instead of an HDEL more).
local function held(v)
  if v == '' then
    return nil
  end
  return v
end

-- An empty table no one writes to (a table is ~1 us to make here).
local NONE = {}

-- Each session's event count (S_COUNT) and other events (SK.OTHERS) before the batch, read by
-- the session cap's check: with figures, flush_tracked() writes both once per session and
-- batch instead of an HINCRBY per event (about -1,200 instructions per event of ~150,000).
local count_before, others_before = {}, {}
local function held_count(sid, sk)
  if not sessions_on then
    return tonumber(redis.call('HGET', sk, S_COUNT) or '0')
  end
  local n = redis.call('HMGET', sk, S_COUNT, SK.OTHERS)
  local count = tonumber(n[1] or '0')
  count_before[sid], others_before[sid] = count, tonumber(n[2] or '0')
  return count
end

-- The funnel's count of an accepted event (figures on: flush_tracked() writes it).
local function count_event(sk)
  if not sessions_on then
    redis.call('HINCRBY', sk, S_COUNT, 1)
  end
end

-- The parts of a session's segment text (S_SEGMENT), split once per call (the funnel's events
-- and the sessions' figures): {channel, device,
-- country, the |channel|device field suffix, the country one (g|country), |country}; a table
-- keyed by it is keyed per segment.
local segments = {}
local function segment_of(text)
  local g = segments[text]
  if not g then
    local ch, dev, cty = string.match(text, SEGMENT_PATTERN)
    g = {ch, dev, cty, SEP .. ch .. SEP .. dev, SK.COUNTRY .. SEP .. cty, SEP .. cty}
    segments[text] = g
  end
  return g
end

-- Counter increments of the call summed per (key, field) and written once each: the figures
-- of all sessions ended in a call fall in a few buckets and segments (money is not summed
-- here: its units are exact strings past 2^53). A field any session touched is written, even
-- when its sum is 0, so the hashes hold the fields they held with one HINCRBY per session.
-- A key's fields are read and written in one HMGET and one HSET: ~100 HINCRBY of a bucket cost
-- ~4 us each here, a field read or write ~0.3 us (docs/benchmarks.md).
local increments, increment_keys = {}, {}
-- Integers Lua's numbers (doubles) hold exactly; a field past them is left to HINCRBY.
local EXACT = 2 ^ 53
local SUM_CHUNK = 500

-- Adds deltas[j] to the integer in field fields[j] of key, for every j.
local function add_fields(key, fields, deltas)
  for from = 1, #fields, SUM_CHUNK do
    local to = math.min(#fields, from + SUM_CHUNK - 1)
    local held_now = redis.call('HMGET', key, unpack(fields, from, to))
    local set = {}
    for j = from, to do
      local old = tonumber(held_now[j - from + 1] or '0')
      local new = old + deltas[j]
      if math.abs(old) < EXACT and math.abs(new) < EXACT then
        set[#set + 1] = fields[j]
        set[#set + 1] = string.format('%d', new)
      else
        redis.call('HINCRBY', key, fields[j], string.format('%d', deltas[j]))
      end
    end
    if #set > 0 then
      redis.call('HSET', key, unpack(set))
    end
  end
end

local function add_to(key, field, n)
  local h = increments[key]
  if not h then
    h = {}
    increments[key] = h
    increment_keys[#increment_keys + 1] = key
  end
  h[field] = (h[field] or 0) + n
end

-- Sessions' bucket figures summed per (bucket, channel, device) and per (bucket, country):
-- figures[bucket][segment_of() table] = {per kind of FIGURE_KINDS its sum, then whether it was
-- touched}; summed per field at the end of the call.
local FIGURE_KINDS = {SK.B_ENDED, SK.B_BOUNCED, SK.B_MS, SK.B_PAGES, SK.B_ABANDONED}
local N_KINDS = #FIGURE_KINDS
local figures = {}

local function flush_increments(pfx)
  for b, by_segment in pairs(figures) do
    -- Summed per field suffix first: per channel|device and per country.
    local sums = {}
    for g, f in pairs(by_segment) do
      for at = 4, 5 do
        local sum = sums[g[at]]
        if not sum then
          sum = {0, 0, 0, 0, 0}
          sums[g[at]] = sum
        end
        for j = 1, N_KINDS do
          if f[N_KINDS + j] then
            sum[j], sum[N_KINDS + j] = sum[j] + f[j], true
          end
        end
      end
    end
    local fields, deltas = {}, {}
    for suffix, sum in pairs(sums) do
      for j = 1, N_KINDS do
        if sum[N_KINDS + j] then
          fields[#fields + 1] = FIGURE_KINDS[j] .. suffix
          deltas[#deltas + 1] = sum[j]
        end
      end
    end
    add_fields(pfx .. SK.BUCKET .. b, fields, deltas)
  end
  for _, key in ipairs(increment_keys) do
    local fields, deltas = {}, {}
    for field, n in pairs(increments[key]) do
      fields[#fields + 1] = field
      deltas[#deltas + 1] = n
    end
    add_fields(key, fields, deltas)
  end
  figures, increments, increment_keys = {}, {}, {}
end

-- One call with many arguments (chunks keep unpack() far below Lua's C stack of 8,000);
-- opt, when given, goes before them (ZADD's GT).
local CHUNK = 1000
local function call_many(cmd, key, args, opt)
  for from = 1, #args, CHUNK do
    local to = math.min(#args, from + CHUNK - 1)
    if opt then
      redis.call(cmd, key, opt, unpack(args, from, to))
    else
      redis.call(cmd, key, unpack(args, from, to))
    end
  end
end

local function end_bucket(endt)
  local q = math.floor(endt / session_bucket_ms)
  local b = bucket_texts[q]
  if not b then
    b = string.format('%d', q * (session_bucket_ms / 1000))
    bucket_texts[q] = b
    session_buckets[b] = true
  end
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

-- Add (sign 1) or take back (-1) a session's figures in the bucket of its end; g is its
-- segment_of().
local function contribute(pfx, c, g, sign)
  local by_seg = figures[c.b]
  if not by_seg then
    by_seg = {}
    figures[c.b] = by_seg
  end
  local f = by_seg[g]
  if not f then
    f = {0, 0, 0, 0, 0}
    by_seg[g] = f
  end
  -- Every session counts in ended; the other kinds only where not 0 (the fields they touch).
  f[1], f[N_KINDS + 1] = f[1] + sign, true
  if c.bounce ~= 0 then
    f[2], f[N_KINDS + 2] = f[2] + c.bounce * sign, true
  end
  if c.ms ~= 0 then
    f[3], f[N_KINDS + 3] = f[3] + c.ms * sign, true
  end
  if c.pages ~= 0 then
    f[4], f[N_KINDS + 4] = f[4] + c.pages * sign, true
  end
  if c.ab ~= 0 then
    f[5], f[N_KINDS + 5] = f[5] + c.ab * sign, true
    if not c.big then
      local bk = pfx .. SK.BUCKET .. c.b
      for cur, units in pairs(c.v) do
        local by = signed(units, sign)
        redis.call('HINCRBY', bk, SK.B_VALUE .. SEP .. cur .. g[4], by)
        redis.call('HINCRBY', bk, SK.B_VALUE .. SK.COUNTRY .. SEP .. cur .. g[6], by)
      end
    end
  end
end

-- SK.CONTRIB: what a session contributed (session_keys.py has the format); an abandoned cart's
-- value goes to SK.CONTRIB_VALUE (close()).
local function encode_contrib(c)
  return string.format(SK.CONTRIB_FORMAT, c.l, c.b, c.bounce, c.ms, c.pages, c.ab,
    c.big and 1 or 0)
end

-- Reads the contribution of the session at sk from its SK.CONTRIB text raw, in any of the three
-- layouts: this version's (the value read only for an abandoned cart), the wide one of the
-- version before, and the JSON of the one before that.
local function decode_contrib(raw, sk)
  local l, b, bounce, ms, pages, ab, big = string.match(raw, SK.CONTRIB_PATTERN)
  local c
  if l then
    c = {l = tonumber(l), b = b, bounce = tonumber(bounce), ms = tonumber(ms),
      pages = tonumber(pages), ab = tonumber(ab), big = big == SK.ON, v = NONE}
    if c.ab == 1 and not c.big then
      c.v = cjson.decode(redis.call('HGET', sk, SK.CONTRIB_VALUE))
    end
    return c
  end
  if string.sub(raw, 1, 1) == SK.JSON_OPEN then
    c = cjson.decode(raw)
    c.legacy = true
    return c
  end
  local e, v
  e, l, b, bounce, ms, pages, ab, big, v = string.match(raw, SK.CONTRIB_WIDE_PATTERN)
  return {e = tonumber(e), l = tonumber(l), b = b, bounce = tonumber(bounce), ms = tonumber(ms),
    pages = tonumber(pages), ab = tonumber(ab), big = big == SK.ON,
    v = v ~= '' and cjson.decode(v) or NONE}
end

-- A new accepted event of the session (the funnel counted it already). st is the funnel's
-- HMGET of the session hash; TRACK_FIELDS start at st[at] when the batch meets it first.
local function track(pfx, sid, ev, i, ts, stage, st, at)
  if not sessions_on then
    redis.call('ZADD', pfx .. K_SESSIONS, 'GT', ts, sid)
    return
  end
  local t = tracked[sid]
  if not t then
    -- Every key a session's state may get, false for none: a key added later grows the table
    -- (a rehash; with the tables below made whole, -940 instructions per event of the bench's
    -- run, 69,000 session-batches).
    t = {last = ts, last_text = ev[i + R_TS_MS], cts = tonumber(st[at + 1]) or false,
      ceid = st[at + 2], cts_text = false, cust = false, visits = 0, others = 0,
      withdrawn = false, cart = false, removed = false, removed_text = false}
    if held(st[at]) then
      -- Ended already: its figures are taken back; it ends again from all its events.
      local c = decode_contrib(st[at], pfx .. K_SESSION .. sid)
      contribute(pfx, c, segment_of(st[1]), -1)
      session_buckets[c.b] = true
      t.withdrawn = c
      reopened[sid] = true
    end
    tracked[sid] = t
    tracked_order[#tracked_order + 1] = sid
  elseif ts > t.last then
    t.last, t.last_text = ts, ev[i + R_TS_MS]
  end
  local cust, eid = ev[i + R_CUSTOMER], ev[i + R_EVENT_ID]
  if cust ~= '' and (not t.cts or ts > t.cts or (ts == t.cts and bytes_before(t.ceid, eid))) then
    t.cts, t.ceid, t.cts_text = ts, eid, ev[i + R_TS_MS]
    t.cust = {cust, ev[i + R_ACCOUNT_ID], ev[i + R_USER_ID]}
  end
  if stage == 0 then
    t.visits = t.visits + 1
    return
  end
  t.others = t.others + 1
  local sku = ev[i + R_SKU]
  if sku ~= '' then
    -- stage 1 is add_to_cart; a removal reaches no stage.
    local qty = ev[i + R_QUANTITY]
    local change
    if stage == 1 then
      change = qty .. SK.ENTRY_SEP .. ev[i + R_PRICE_UNITS] .. SK.ENTRY_SEP .. ev[i + R_CURRENCY]
    else
      change = SK.MINUS .. qty .. SK.ENTRY_SEP .. SK.ENTRY_SEP
      if not t.removed or ts < t.removed then
        t.removed, t.removed_text = ts, ev[i + R_TS_MS]
      end
    end
    local entry = string.format('%d', #sku) .. SK.ENTRY_SEP .. sku .. ev[i + R_TS_MS]
    local cart = t.cart or {}
    t.cart = cart
    cart[#cart + 1] = entry .. SK.ENTRY_SEP .. eid
    cart[#cart + 1] = change
  end
end

-- The batch's sessions written back before end_sessions() reads them: at most one HSET of
-- the session, one HSET of its cart, and one ZADD GT of all their ends.
local function flush_tracked(pfx)
  local ends, carts_gone, details_gone = {}, {}, {}
  for _, sid in ipairs(tracked_order) do
    local t = tracked[sid]
    local sk = pfx .. K_SESSION .. sid
    -- Made whole where it can be (a table grown by appends is rehashed at 1, 2, 4, 8 items).
    local count = string.format('%d', count_before[sid] + t.visits + t.others)
    local set
    if t.cust then
      set = {S_COUNT, count, SK.CUST_TS, t.cts_text, SK.CUST_EID, t.ceid, SK.CUST,
        cjson.encode(t.cust)}
    else
      set = {S_COUNT, count}
    end
    if t.removed then
      -- The first ts of a session is its first stage time or an earlier removal's.
      local f = tonumber(redis.call('HGET', sk, SK.FIRST))
      if not f or t.removed < f then
        set[#set + 1] = SK.FIRST
        set[#set + 1] = t.removed_text
      end
    end
    if t.withdrawn then
      -- It ends again with figures (the version before, JSON in SK.CONTRIB, marked none).
      set[#set + 1] = SK.MARK
      set[#set + 1] = SK.ON
      set[#set + 1] = SK.CONTRIB
      set[#set + 1] = ''
    end
    if t.withdrawn and t.withdrawn.legacy then
      -- The version before counted visits (SK.VISITS); the others follow from the events.
      set[#set + 1] = SK.OTHERS
      set[#set + 1] = string.format('%d',
        count_before[sid] - tonumber(redis.call('HGET', sk, SK.VISITS) or '0') + t.others)
    elseif t.others > 0 then
      set[#set + 1] = SK.OTHERS
      set[#set + 1] = string.format('%d', others_before[sid] + t.others)
    end
    redis.call('HSET', sk, unpack(set))
    if t.cart then
      call_many('HSET', pfx .. SK.CART .. sid, t.cart)
    end
    local last = t.last_text
    if t.withdrawn then
      if t.withdrawn.ab == 1 then
        details_gone[#details_gone + 1] = sid
        carts_gone[#carts_gone + 1] = sid
      end
      -- Not in K_SESSIONS since it ended: its last ts is the later of the old and the new.
      last = string.format('%d',
        math.max(t.last, t.withdrawn.l or (t.withdrawn.e - session_timeout)))
    end
    ends[#ends + 1] = last
    ends[#ends + 1] = sid
  end
  call_many('HDEL', pfx .. SK.DETAILS, details_gone)
  call_many('ZREM', pfx .. SK.CARTS, carts_gone)
  call_many('ZADD', pfx .. K_SESSIONS, ends, 'GT')
  tracked, tracked_order, count_before, others_before = {}, {}, {}, {}
end

-- The cart fact the customer stage should hold for the session (nil: none), given the last
-- one emitted (JSON, or nil or '' for none) and how many it emitted (the version): a change
-- emits facts with the next versions (deterministic from the session's hash) and adds the
-- fields to write to set.
local function cart_facts(sid, wanted, last, version, out, set)
  last = held(last)
  local want = wanted and cjson.encode(wanted) or false
  if (last or false) == want then
    return
  end
  local v = tonumber(version or '0')
  local old = last and cjson.decode(last)
  if old and (not wanted or old[1] ~= wanted[1]) then
    v = v + 1
    out[#out + 1] = old[1]
    out[#out + 1] = cjson.encode({FACT_CART, old[1], sid, string.format('%d', v), '', '', '', ''})
  end
  if wanted then
    v = v + 1
    out[#out + 1] = wanted[1]
    out[#out + 1] = cjson.encode(
      {FACT_CART, wanted[1], sid, string.format('%d', v), wanted[2], wanted[3], wanted[4],
       wanted[5]})
  end
  set[#set + 1] = SK.CART_FACT
  set[#set + 1] = want or ''
  set[#set + 1] = SK.CART_VERSION
  set[#set + 1] = string.format('%d', v)
end

local DURATION_BOUNDS_MS = {}
for bound in string.gmatch(SK.DURATIONS, SK.LIST_ITEM) do
  DURATION_BOUNDS_MS[#DURATION_BOUNDS_MS + 1] = tonumber(bound) * 1000
end

local function duration_bin(ms)
  for k, bound in ipairs(DURATION_BOUNDS_MS) do
    if ms <= bound then
      return k - 1
    end
  end
  return #DURATION_BOUNDS_MS
end

-- The totals' field of each duration bin (from 0, as duration_bin counts).
local DURATION_FIELDS = {}
for k = 0, #DURATION_BOUNDS_MS do
  DURATION_FIELDS[k] = SK.T_DURATION .. SEP .. string.format('%d', k)
end

-- What close() writes for all the sessions ended in a call, in one call per key.
local closing = {}

-- The session ended (its end < the watermark): its figures into the bucket of its end.
local function close(pfx, tot, sid, score, facts_on, out)
  local sk = pfx .. K_SESSION .. sid
  -- A field read is ~0.5 us here: the cart's customer and its fact's version are read only for
  -- a cart that is abandoned now or had a fact.
  local st = redis.call('HMGET', sk, S_SEGMENT, S_COUNT, SK.FIRST, S_STAGE_TIME .. 0, SK.OTHERS,
    S_STAGE_TIME .. 1, SK.ORDERS, SK.SEEN, SK.CART_FACT, SK.MARK)
  if not st[10] then
    -- Kept by an older version (no figures): evicted in time like the others.
    closing.ended[#closing.ended + 1] = score
    closing.ended[#closing.ended + 1] = sid
    return
  end
  local g = segment_of(st[1])
  local ch, dev, cty = g[1], g[2], g[3]
  -- K_SESSIONS scores a session by its last ts.
  local last = tonumber(score)
  local endt = last + session_timeout
  local visits = tonumber(st[2]) - tonumber(st[5] or '0')
  local first = math.min(tonumber(st[3]) or last, tonumber(st[4]) or last)
  local c = {
    l = last, b = end_bucket(endt),
    bounce = (tonumber(st[2]) == 1 and visits == 1) and 1 or 0,
    ms = last - first, pages = visits,
    ab = (st[6] and tonumber(st[7] or '0') == 0) and 1 or 0, v = NONE, big = false,
  }
  local items = {}
  if c.ab == 1 then
    c.v, items, c.big = cart_of(pfx .. SK.CART .. sid)
  end
  contribute(pfx, c, g, 1)
  local endt_text = string.format('%d', endt)
  closing.ended[#closing.ended + 1] = endt_text
  closing.ended[#closing.ended + 1] = sid
  -- Cumulative counters: once, when first seen (they never move).
  local seen = st[8] or ''
  local seen0 = seen
  local seg = g[4]
  if not string.find(seen, SK.SEEN_ENDED, 1, true) then
    seen = seen .. SK.SEEN_ENDED
    add_to(tot, SK.T_ENDED .. seg, 1)
    add_to(tot, DURATION_FIELDS[duration_bin(c.ms)], 1)
    add_to(tot, SK.T_DURATION_SUM, c.ms)
  end
  if c.bounce == 1 and not string.find(seen, SK.SEEN_BOUNCED, 1, true) then
    seen = seen .. SK.SEEN_BOUNCED
    add_to(tot, SK.T_BOUNCED .. seg, 1)
  end
  if c.ab == 1 and not string.find(seen, SK.SEEN_ABANDONED, 1, true) then
    seen = seen .. SK.SEEN_ABANDONED
    add_to(tot, SK.T_ABANDONED .. seg, 1)
    if c.big then
      add_to(tot, SK.T_VALUE_OVERFLOW, 1)
    else
      for cur, units in pairs(c.v) do
        redis.call('HINCRBY', tot, SK.T_VALUE .. SEP .. cur, units)
      end
    end
  end
  local set
  if seen ~= seen0 then
    set = {SK.CONTRIB, encode_contrib(c), SK.SEEN, seen}
  else
    set = {SK.CONTRIB, encode_contrib(c)}
  end
  if c.ab == 1 and not c.big then
    set[#set + 1] = SK.CONTRIB_VALUE
    set[#set + 1] = cjson.encode(c.v)
  end
  local wanted, cart = nil, NONE
  if c.ab == 1 or held(st[9]) then
    cart = redis.call('HMGET', sk, SK.CUST, SK.CART_VERSION)
  end
  if c.ab == 1 then
    local who = held(cart[1]) and cjson.decode(cart[1])
    local cust = who or {'', '', ''}
    closing.details[#closing.details + 1] = sid
    closing.details[#closing.details + 1] = cjson.encode({
      cust[1], cust[2], cust[3], ch, dev, endt_text, c.v, items})
    closing.carts[#closing.carts + 1] = endt_text
    closing.carts[#closing.carts + 1] = sid
    if who then
      wanted = {who[1], endt_text, ch, dev, cty}
    end
  end
  if facts_on then
    cart_facts(sid, wanted, st[9], cart[2], out, set)
  end
  redis.call('HSET', sk, unpack(set))
end

-- After the batch's events: end what the watermark passed, evict what it passed by the
-- lateness, expire listed carts. Returns the cart facts as (customer, fact JSON) pairs.
local function end_sessions(pfx, facts_on)
  -- The stage 1 totals: a hash of their own (session_keys.ENDED_TOTALS).
  local tot = pfx .. SK.TOTALS
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
  flush_tracked(pfx)
  local sz = pfx .. K_SESSIONS
  -- Ended: last + the timeout < the watermark.
  local due = redis.call('ZRANGEBYSCORE', sz, '-inf',
    '(' .. string.format('%d', tonumber(wm) - session_timeout), 'WITHSCORES', 'LIMIT', 0,
    SK.END_LIMIT)
  local ended, due_ids = {}, {}
  for j = 1, #due, 2 do
    due_ids[#due_ids + 1] = due[j]
  end
  call_many('ZREM', sz, due_ids)
  closing = {ended = {}, details = {}, carts = {}}
  for j = 1, #due, 2 do
    close(pfx, tot, due[j], due[j + 1], facts_on, out)
    ended[due[j]] = true
  end
  call_many('ZADD', pfx .. SK.ENDED, closing.ended)
  call_many('HSET', pfx .. SK.DETAILS, closing.details)
  call_many('ZADD', pfx .. SK.CARTS, closing.carts)
  if facts_on then
    for sid, _ in pairs(reopened) do
      if not ended[sid] then
        -- Its end moved past the watermark: not an abandoned cart (yet).
        local sk = pfx .. K_SESSION .. sid
        local st = redis.call('HMGET', sk, SK.CART_FACT, SK.CART_VERSION)
        local set = {}
        cart_facts(sid, nil, st[1], st[2], out, set)
        if #set > 0 then
          redis.call('HSET', sk, unpack(set))
        end
      end
    end
  end
  -- State of ended sessions goes once the watermark passes end + the allowed lateness: an
  -- event of theirs would be older than the watermark minus the lateness, rejected late.
  local horizon = tonumber(ARGV[A_SESSION_HORIZON_MS]) + session_timeout
  local ez = pfx .. SK.ENDED
  local old = redis.call('ZRANGEBYSCORE', ez, '-inf', '(' .. string.format('%d', horizon),
    'LIMIT', 0, SK.EVICT_LIMIT)
  if #old > 0 then
    call_many('ZREM', ez, old)
    -- A session reopened by a late event is in K_SESSIONS again: its state stays.
    local open = redis.call('ZMSCORE', sz, unpack(old))
    local gone = {}
    for j, sid in ipairs(old) do
      if not open[j] then
        gone[#gone + 1] = pfx .. K_SESSION .. sid
        gone[#gone + 1] = pfx .. SK.CART .. sid
      end
    end
    for from = 1, #gone, CHUNK do
      redis.call('DEL', unpack(gone, from, math.min(#gone, from + CHUNK - 1)))
    end
  end
  local listed = pfx .. SK.CARTS
  local expired = redis.call('ZRANGEBYSCORE', listed, '-inf',
    '(' .. string.format('%d', tonumber(wm) - tonumber(ARGV[A_RECOVERY_MS])), 'LIMIT', 0,
    SK.EVICT_LIMIT)
  call_many('ZREM', listed, expired)
  call_many('HDEL', pfx .. SK.DETAILS, expired)
  flush_increments(pfx)
  local bz = pfx .. K_BUCKETS
  for b, _ in pairs(session_buckets) do
    redis.call('ZADD', bz, 'NX', b, b)
  end
  return out
end
