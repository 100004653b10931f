-- storepulse: the account directory's atomic steps (streams/store/directory.py).
--
-- ARGV[1] is the directory's key prefix (one hash tag: one Redis Cluster slot), ARGV[2] the
-- step. The pointer hash names the generation readers use and a version that every change
-- moves; a generation is a hash account_id -> row. Key and field names come from the header
-- of streams/store/directory.py.
--   read                                  -> {generation, version, flat rows}
--   flip new_gen expected_version now_ms  -> {status}: make new_gen current (expected_version
--                                            '' = whatever it is) and drop the old one
--   feed partition expected new n (reason, count)* rows_json
--                                         -> {status, stored offset}: upserts of the topic
--                                            feed and the partition's offset, at once

local pfx, step = ARGV[1], ARGV[2]
local pointer = pfx .. D_POINTER

local function generation_key(gen)
  return pfx .. D_GENERATION .. gen
end

if step == 'read' then
  local gen, version = unpack(redis.call('HMGET', pointer, P_GENERATION, P_VERSION))
  if not gen then
    return {'', '0', {}}
  end
  return {gen, version or '0', redis.call('HGETALL', generation_key(gen))}
end

if step == 'flip' then
  local new, expected = ARGV[3], ARGV[4]
  local old, version = unpack(redis.call('HMGET', pointer, P_GENERATION, P_VERSION))
  if expected ~= '' and (version or '0') ~= expected then
    return {STATUS_CONFLICT}
  end
  redis.call('HSET', pointer, P_GENERATION, new, P_LOADED_MS, ARGV[5])
  redis.call('HINCRBY', pointer, P_VERSION, 1)
  if old and old ~= new then
    redis.call('UNLINK', generation_key(old))
  end
  return {STATUS_OK}
end

-- feed
local feed = pfx .. D_FEED
local p = ARGV[3]
local stored = tonumber(redis.call('HGET', feed, F_OFFSET .. SEP .. p) or '-1')
if stored ~= tonumber(ARGV[4]) then
  return {STATUS_CONFLICT, stored}
end
local n = tonumber(ARGV[6])
for i = 7, 6 + 2 * n, 2 do
  redis.call('HINCRBY', feed, F_REJECTED .. SEP .. ARGV[i], ARGV[i + 1])
end
local rows = cjson.decode(ARGV[7 + 2 * n])
if #rows > 0 then
  local gen = redis.call('HGET', pointer, P_GENERATION)
  if not gen then
    gen = tostring(redis.call('INCR', pfx .. D_NEXT))
    redis.call('HSET', pointer, P_GENERATION, gen)
  end
  local gk = generation_key(gen)
  for i = 1, #rows, 2 do
    redis.call('HSET', gk, rows[i], rows[i + 1])
  end
  redis.call('HINCRBY', pointer, P_VERSION, 1)
  redis.call('HINCRBY', feed, F_APPLIED, #rows / 2)
end
redis.call('HSET', feed, F_OFFSET .. SEP .. p, ARGV[5])
return {STATUS_OK, tonumber(ARGV[5])}
