-- GCRA / leaky bucket. ARGV: mode, Q, R, cost, L, T (interval), tolerance, burst.
-- State "tq:tr": TAT = tq * L + tr.
local cost = tonumber(ARGV[4])
local L = tonumber(ARGV[5])
local T = tonumber(ARGV[6])
local tol = tonumber(ARGV[7])
local burst = tonumber(ARGV[8])
if cost > burst then return {-1, burst} end
local q, r = now_qr(L)
local raw = redis.call('GET', KEYS[1])
local b = 0
if raw then
  local f = fields(raw, 2)
  if not f then return corrupt(KEYS[1]) end
  local d = (f[1] - q) * L + (f[2] - r)
  if d > 0 then b = d end
end
local n = b + cost * T
if n <= tol then
  if cost > 0 then
    local tq, tr = divmod(1, r, n, L)
    store(KEYS[1], num(q + tq) .. ':' .. num(tr), n)
  end
  return {1, burst, math.floor((tol - n) / T), 0, n}
end
local room = tol - b
if room < 0 then room = 0 end
return {0, burst, math.floor(room / T), n - tol, b}
