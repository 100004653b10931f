-- storepulse: abandoned carts and their recovery, loaded in front of apply_customers.lua.
--
-- Names come from the header (A_*, R_*, K_*, C_*, T_*, SEP, DETAIL_PATTERN, MINUS) and from the
-- table CK that streams/store/customer_keys.py renders: this file spells none itself.
--
-- A customer's carts are kept in CK.CART .. customer (session id -> state: the highest
-- version applied, the end, the segment, the recovering order) and CK.CARTS .. customer (live
-- carts by end). A cart is recovered by the customer's first order (ts, order id) with
-- end < ts <= end + the recovery window: ZRANGEBYSCORE of the customer's orders (K_CUSTOMER_ORDERS,
-- scored by ts, ties in order id order) gives it. Each cart's recovery is independent of the
-- others; an order recovering several carts counts its revenue once, with the earliest of them
-- (end, session id), its owner (CK.OWNER .. order id). Any change (a cart added, moved or
-- withdrawn, an order added) takes back the figures it changes and adds the new ones, so the
-- result depends on the set of facts, not on their order (docs/semantics.md).

-- Its entry points are the three locals below; everything else lives in the block, so that
-- the script's main chunk, which holds every header constant as a local (Lua allows 200),
-- keeps only these.
local apply_cart, order_recovers, carts_done
do
  local cart_pfx = ARGV[A_PREFIX]
  local cart_bucket_ms = tonumber(ARGV[A_BUCKET_MS])
  local recovery_ms = tonumber(ARGV[A_RECOVERY_MS])
  local cart_buckets = {}
  local stale_carts = 0

  local function cart_bucket(ts)
    local b = string.format('%d', math.floor(ts / cart_bucket_ms) * (cart_bucket_ms / 1000))
    cart_buckets[b] = true
    return cart_pfx .. CK.BUCKET .. b
  end

  local function cart_get(kk, sid)
    local raw = redis.call('HGET', kk, sid)
    return raw and cjson.decode(raw)
  end

  local function cart_put(kk, sid, cart)
    redis.call('HSET', kk, sid, cjson.encode(cart))
  end

  -- The recovery of one cart, added (1) or taken back (-1): in the order's bucket and the end's.
  local function recovery(cart, sign)
    local seg = SEP .. cart.ch .. SEP .. cart.dev
    local cty = SEP .. cart.cty
    local by = string.format('%d', sign)
    local ob, eb = cart_bucket(cart.rt), cart_bucket(cart.e)
    redis.call('HINCRBY', ob, CK.B_RECOVERED .. seg, by)
    redis.call('HINCRBY', ob, CK.B_RECOVERED .. CK.COUNTRY .. cty, by)
    redis.call('HINCRBY', eb, CK.B_RECOVERED_END .. seg, by)
    redis.call('HINCRBY', eb, CK.B_RECOVERED_END .. CK.COUNTRY .. cty, by)
  end

  local function recovered(cart, oid, ots)
    cart.r, cart.rt = oid, ots
    recovery(cart, 1)
    if not cart.seen then
      cart.seen = 1
      redis.call('HINCRBY', cart_pfx .. K_TOTALS, CK.T_RECOVERED, 1)
    end
  end

  -- The earliest live cart (end, session id) that the order recovers, with its state.
  local function owner_of(kk, kz, oid, ots)
    local sids = redis.call('ZRANGEBYSCORE', kz, string.format('%d', ots - recovery_ms),
      '(' .. string.format('%d', ots))
    for _, sid in ipairs(sids) do
      local cart = cart_get(kk, sid)
      if cart.r == oid then
        return sid, cart
      end
    end
    return nil, nil
  end

  -- Move the order's revenue to its owner, if the owner changed.
  local function settle_owner(cust, oid, ots)
    local kk, kz = cart_pfx .. CK.CART .. cust, cart_pfx .. CK.CARTS .. cust
    local sid, cart = owner_of(kk, kz, oid, ots)
    local now = sid and {sid, cart.ch, cart.dev, cart.cty} or false
    local raw = redis.call('HGET', kk, CK.OWNER .. oid)
    local now_text = now and cjson.encode(now) or false
    if (raw or false) == now_text then
      return
    end
    local detail = redis.call('HGET', cart_pfx .. K_CUSTOMER .. cust, C_ORDER .. oid)
    local _, units, cur = string.match(detail, DETAIL_PATTERN)
    local bk = cart_bucket(ots)
    local function revenue(owner, by)
      local seg = SEP .. cur .. SEP .. owner[2] .. SEP .. owner[3]
      redis.call('HINCRBY', bk, CK.B_REVENUE .. seg, by)
      redis.call('HINCRBY', bk, CK.B_REVENUE .. CK.COUNTRY .. SEP .. cur .. SEP .. owner[4], by)
    end
    if raw then
      revenue(cjson.decode(raw), (units == '0') and units or (MINUS .. units))
    end
    if now then
      revenue(now, units)
      redis.call('HSET', kk, CK.OWNER .. oid, now_text)
    else
      redis.call('HDEL', kk, CK.OWNER .. oid)
    end
  end

  local function expire_at(cust, sid, ms)
    redis.call('ZADD', cart_pfx .. CK.EXPIRY, ms,
      string.format('%d', #cust) .. CK.EXPIRY_SEP .. cust .. sid)
  end

  -- A cart fact: the session's cart of this customer as of its version (end '' = none).
  function apply_cart(rec, j)
    local cust, sid = rec[j + R_CUSTOMER], rec[j + R_SESSION_ID]
    local version = tonumber(rec[j + R_VERSION])
    local kk, kz = cart_pfx .. CK.CART .. cust, cart_pfx .. CK.CARTS .. cust
    local old = cart_get(kk, sid)
    if old and old.v >= version then
      stale_carts = stale_carts + 1 -- re-sent, or overtaken by a newer version
      return
    end
    local affected = {}
    if old and old.r then
      recovery(old, -1)
      affected[old.r] = old.rt
    end
    local cart = {v = version, seen = old and old.seen}
    local endt = rec[j + R_TS_MS]
    if endt ~= '' then
      cart.e, cart.ch, cart.dev, cart.cty = tonumber(endt), rec[j + R_CHANNEL],
        rec[j + R_DEVICE], rec[j + R_COUNTRY]
      redis.call('ZADD', kz, cart.e, sid)
      local got = redis.call('ZRANGEBYSCORE', cart_pfx .. K_CUSTOMER_ORDERS .. cust,
        '(' .. endt, string.format('%d', cart.e + recovery_ms), 'WITHSCORES', 'LIMIT', 0, 1)
      if got[1] then
        recovered(cart, got[1], tonumber(got[2]))
        affected[cart.r] = cart.rt
      end
      expire_at(cust, sid, cart.e)
    else
      redis.call('ZREM', kz, sid)
      -- The withdrawal is kept as long as the cart would have been, so an older version
      -- arriving later (another worker's re-send) is recognised as older.
      expire_at(cust, sid, old and old.e or tonumber(ARGV[A_WATERMARK_MS]))
    end
    cart_put(kk, sid, cart)
    for oid, ots in pairs(affected) do
      settle_owner(cust, oid, ots)
    end
  end

  -- A new order of the customer: it recovers the live carts that ended in the window before it
  -- and are not recovered by an earlier order yet.
  function order_recovers(cust, oid, ots)
    local kk, kz = cart_pfx .. CK.CART .. cust, cart_pfx .. CK.CARTS .. cust
    local sids = redis.call('ZRANGEBYSCORE', kz, string.format('%d', ots - recovery_ms),
      '(' .. string.format('%d', ots))
    local affected = {}
    for _, sid in ipairs(sids) do
      local cart = cart_get(kk, sid)
      if not cart.r or ots < cart.rt or (ots == cart.rt and bytes_before(oid, cart.r)) then
        if cart.r then
          recovery(cart, -1)
          affected[cart.r] = cart.rt
        end
        recovered(cart, oid, ots)
        affected[oid] = ots
        cart_put(kk, sid, cart)
      end
    end
    for o, ts in pairs(affected) do
      settle_owner(cust, o, ts)
    end
  end

  -- After the batch: forget carts older than the window and the lateness (bounded per call),
  -- delete recovery buckets past the retention, index the buckets written.
  function carts_done()
    local kx = cart_pfx .. CK.EXPIRY
    local old = redis.call('ZRANGEBYSCORE', kx, '-inf', '(' .. ARGV[A_CART_HORIZON_MS], 'LIMIT',
      0, CK.EXPIRY_LIMIT)
    for _, member in ipairs(old) do
      redis.call('ZREM', kx, member)
      local colon = string.find(member, CK.EXPIRY_SEP, 1, true)
      local n = tonumber(string.sub(member, 1, colon - 1))
      local cust = string.sub(member, colon + 1, colon + n)
      local sid = string.sub(member, colon + n + 1)
      -- An order's owner (CK.OWNER) stays with the customer's orders: a later change can then
      -- only move its revenue, never count it twice.
      redis.call('HDEL', cart_pfx .. CK.CART .. cust, sid)
      redis.call('ZREM', cart_pfx .. CK.CARTS .. cust, sid)
    end
    local bz = cart_pfx .. CK.BUCKETS
    for b, _ in pairs(cart_buckets) do
      redis.call('ZADD', bz, 'NX', b, b)
    end
    local gone = redis.call('ZRANGEBYSCORE', bz, '-inf', '(' .. ARGV[A_BUCKET_HORIZON_S], 'LIMIT',
      0, 200)
    for _, b in ipairs(gone) do
      redis.call('DEL', cart_pfx .. CK.BUCKET .. b)
      redis.call('ZREM', bz, b)
    end
    if stale_carts > 0 then
      redis.call('HINCRBY', cart_pfx .. K_TOTALS, CK.T_STALE, stale_carts)
    end
  end
end
