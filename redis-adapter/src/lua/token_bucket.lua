-- Token bucket. Constants: L (unit), cap (capacity), limit, period, KL (= L / period * limit).
-- ARGV: cost [, Q, R]. Produced by now: P = Q * KL + p. State: two packed doubles dq, dm with
-- D = dq * KL + dm.
local L, cap, limit, period, KL = {{PARAMS}}
local cost = tonumber(ARGV[1])
if cost > cap then return too_big(cap) end
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
local available = cap - short
if available < 0 then available = 0 end
if cost <= available then
  local x = p + short + cost
  local reset = after(x)
  if cost > 0 then
    local dq, dm = divmod(1, x, 0, KL)
    store(key, struct.pack('<dd', q + dq, dm), reset)
  end
  return reply(1, cap, available - cost, 0, reset)
end
return reply(0, cap, available, after(p + short + cost - cap), after(p + short))
