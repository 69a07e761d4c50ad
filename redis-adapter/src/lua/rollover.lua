-- Quota with rollover. Constants: L (unit), limit, period, k (= L / period), num, den (the
-- fraction), cap (the carry cap, at most limit), maxc (the largest carry). ARGV: cost [, Q, R].
-- State: see `rollover_decide`.
local L, limit, period, k, num, den, cap, maxc = {{PARAMS}}
local most = limit + maxc
local cost = tonumber(ARGV[1])
if cost > most then return too_big(most) end
local q, r = now_qr(L)
local key = KEYS[1]
return settle(key, most, L,
  rollover_decide(key, q, r, L, limit, period, k, num, den, cap, maxc, cost))
