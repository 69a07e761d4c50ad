-- Fixed window. ARGV: mode, Q, R, cost, L, limit, period, k (= L / period).
-- Window index = Q * k + j. State "sq:sj:count".
local cost = tonumber(ARGV[4])
local L = tonumber(ARGV[5])
local limit = tonumber(ARGV[6])
local period = tonumber(ARGV[7])
local k = tonumber(ARGV[8])
if cost > limit then return {-1, limit} end
local q, r = now_qr(L)
local off = math.fmod(r, period)
local j = (r - off) / period
local iq, ij, count, until_end = q, j, 0, period - off
local raw = redis.call('GET', KEYS[1])
if raw then
  local f = fields(raw, 3)
  if not f then return corrupt(KEYS[1]) end
  local ahead = (q - f[1]) * k + (j - f[2])
  if ahead == 0 then
    count = f[3]
  elseif ahead == -1 then
    iq, ij, count, until_end = f[1], f[2], f[3], 2 * period - off
  end
end
local available = limit - count
if available < 0 then available = 0 end
if cost <= available then
  local used = count + cost
  local reset = until_end
  if used == 0 then reset = 0 end
  if cost > 0 then
    store(KEYS[1], num(iq) .. ':' .. num(ij) .. ':' .. num(used), reset)
  end
  return {1, limit, available - cost, 0, reset}
end
return {0, limit, available, until_end, until_end}
