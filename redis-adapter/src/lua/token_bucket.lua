-- Token bucket. ARGV: mode, Q, R, cost, L, capacity, limit, period, KL (= L / period * limit).
-- Produced by now: P = Q * KL + p. State "dq:dm": D = dq * KL + dm.
local cost = tonumber(ARGV[4])
local L = tonumber(ARGV[5])
local cap = tonumber(ARGV[6])
local limit = tonumber(ARGV[7])
local period = tonumber(ARGV[8])
local KL = tonumber(ARGV[9])
if cost > cap then return {-1, cap} end
local q, r = now_qr(L)
local p = muldiv(r, limit, period)
local raw = redis.call('GET', KEYS[1])
local short = 0
if raw then
  local f = fields(raw, 2)
  if not f then return corrupt(KEYS[1]) end
  local d = (f[1] - q) * KL + (f[2] - p)
  if d > 0 then short = d end
end
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
    store(KEYS[1], num(q + dq) .. ':' .. num(dm), reset)
  end
  return {1, cap, available - cost, 0, reset}
end
return {0, cap, available, after(p + short + cost - cap), after(p + short)}
