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
local raw = redis.call('GET', key)
local b = 0
if raw then
  if #raw ~= 16 then return corrupt(key) end
  local tq, tr = struct.unpack('<dd', raw)
  if tq % 1 ~= 0 or tr % 1 ~= 0 then return corrupt(key) end
  local d = (tq - q) * L + (tr - r)
  if d > 0 then b = d end
end
local n = b + cost * T
if n <= tol then
  if cost > 0 then
    local tq, tr = divmod(1, r, n, L)
    store(key, struct.pack('<dd', q + tq, tr), n)
  end
  return reply(1, burst, math.floor((tol - n) / T), 0, n)
end
local room = tol - b
if room < 0 then room = 0 end
return reply(0, burst, math.floor(room / T), n - tol, b)
