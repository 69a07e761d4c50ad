-- Token bucket with debt. Constants: L (unit), cap (capacity), debt (max debt), limit, period,
-- KL (= L / period * limit). ARGV: cost [, Q, R]. The state is the token bucket's: D, tokens
-- taken on the production schedule, as two packed doubles dq, dm with D = dq * KL + dm. A check
-- is admitted when the key owes nothing (shortfall <= cap) and the charge leaves it owing at
-- most `debt` (shortfall + cost <= cap + debt).
local L, cap, debt, limit, period, KL = {{PARAMS}}
local most = cap + debt
local cost = tonumber(ARGV[1])
if cost > most then return too_big(most) end
local q, r = now_qr(L)
local p = muldiv(r, limit, period)
local key = KEYS[1]
local short, err = packed_ahead(key, q, p, KL)
if not short then return err end
-- time_for(Q * KL + x) - now = ceil(x * period / limit) - R, floored at 0.
local function after(x)
  local t = muldiv_ceil(x, period, limit) - r
  if t < 0 then return 0 end
  return t
end
-- The largest cost admitted with a shortfall of s.
local function admissible(s)
  if s > cap then return 0 end
  return most - s
end
local available = admissible(short)
if cost <= available then
  local x = p + short + cost
  local reset = after(x)
  if cost > 0 then
    local dq, dm = divmod(1, x, 0, KL)
    store(key, struct.pack('<dd', q + dq, dm), reset)
  end
  return reply(1, most, admissible(short + cost), 0, reset)
end
-- Admitted once the shortfall is down to min(cap, most - cost).
local room = most - cost
if cap < room then room = cap end
return reply(0, most, available, after(p + short - room), after(p + short))
