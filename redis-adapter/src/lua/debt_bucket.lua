-- Token bucket with debt. Constants: L (unit), cap (capacity), debt (max debt), limit, period,
-- KL (= L / period * limit). ARGV: cost [, Q, R]. The state is the token bucket's (see
-- `bucket_decide`); the most one check can take is cap + debt.
local L, cap, debt, limit, period, KL = {{PARAMS}}
local most = cap + debt
local cost = tonumber(ARGV[1])
if cost > most then return too_big(most) end
local q, r = now_qr(L)
local key = KEYS[1]
return settle(key, most, L, bucket_decide(key, q, r, cap, debt, limit, period, KL, cost))
