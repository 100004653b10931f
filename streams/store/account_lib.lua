-- storepulse: the at-risk instant, shared by apply_accounts.lua and query_accounts.lua.
--
-- The first instant (ms) at which an account whose last tracked order is at `last` and whose
-- doubled median gap is m2 is at risk with the factor p (hundredths): the integer
-- last + floor(p * m2 / RISK_DIVISOR) + 1 of streams/contract/accounts.py risk_start_ms, with
-- p * m2 split so that every double stays an exact integer; nil: never (after MAX_TS_MS).
local function risk_start(last, m2, p)
  local q, r = math.floor(m2 / RISK_DIVISOR), m2 % RISK_DIVISOR
  local big = p * q
  if big > MAX_TS_MS then
    return nil
  end
  local start = last + big + math.floor(p * r / RISK_DIVISOR) + 1
  if start > MAX_TS_MS then
    return nil
  end
  return start
end
