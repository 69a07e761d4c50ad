-- GCRA with the interval T and the burst sent with each call (a rate that moves between
-- checks: live, tiered, adaptive, scheduled, per priority). ARGV: cost, T, burst [, Q, R].
-- The unit L is fixed (one second) so that the stored TAT is the same absolute time whatever
-- T a later check brings: state is two packed doubles tq, tr with TAT = tq * L + tr.
local L = 1000000000
local cost, T, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tol = burst * T
if cost > burst then return too_big(burst) end
local q, r = now_qr(L, 4)
local key = KEYS[1]
return settle(key, burst, L, gcra_decide(key, q, r, L, T, tol, cost))
