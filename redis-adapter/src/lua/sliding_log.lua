-- Sliding window log. KEYS: log (sorted set), meta (hash). Constants: L (unit), limit, period.
-- ARGV: cost [, Q, R]. See `log_decide`.
local L, limit, period = {{PARAMS}}
local cost = tonumber(ARGV[1])
if cost > limit then return too_big(limit) end
local q, r = now_qr(L)
local log, meta = KEYS[1], KEYS[2]
local allowed, remaining, ru, rr, su, sr, base, rel =
  log_decide(log, meta, q, r, L, limit, period, cost)
if not allowed then return remaining end
if base then log_store(log, meta, cost, base, rel, sr) end
return answer(allowed, limit, remaining, ru, rr, su, sr, L)
