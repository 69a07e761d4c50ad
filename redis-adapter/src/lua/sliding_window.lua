-- Sliding window counter. Constants: L (unit), limit, period, k (= L / period).
-- ARGV: cost [, Q, R]. State: see `sliding_decide`.
local L, limit, period, k = {{PARAMS}}
local cost = tonumber(ARGV[1])
if cost > limit then return too_big(limit) end
local q, r = now_qr(L)
local key = KEYS[1]
return settle(key, limit, L, sliding_decide(key, q, r, L, limit, period, k, cost))
