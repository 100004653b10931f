-- storepulse: helpers shared by the store's scripts, loaded in front of them.

-- Byte order of two strings, the order Python and Redis sorted sets give ids (Lua's < follows
-- the locale Redis runs in).
local function bytes_before(a, b)
  local n = math.min(#a, #b)
  for j = 1, n do
    local x, y = string.byte(a, j), string.byte(b, j)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end
