-- GCRA / leaky bucket. Constants: L (unit), T (interval), tol (tolerance), burst.
-- ARGV: cost [, Q, R]. State: two packed doubles tq, tr with TAT = tq * L + tr.
local L, T, tol, burst = {{PARAMS}}
local cost = tonumber(ARGV[1])
if cost > burst then return too_big(burst) end
local q, r = now_qr(L)
local key = KEYS[1]
return settle(key, burst, L, gcra_decide(key, q, r, L, T, tol, cost))
