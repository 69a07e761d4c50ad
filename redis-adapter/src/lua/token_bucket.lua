-- Token bucket: the debt bucket with no debt. Constants: L (unit), cap (capacity), limit,
-- period, KL (= L / period * limit). ARGV: cost [, Q, R]. State: see `bucket_decide`.
local L, cap, limit, period, KL = {{PARAMS}}
local cost = tonumber(ARGV[1])
if cost > cap then return too_big(cap) end
local q, r = now_qr(L)
local key = KEYS[1]
return settle(key, cap, L, bucket_decide(key, q, r, cap, 0, limit, period, KL, cost))
