-- Fixed window. Constants: L (unit), limit, period, k (= L / period).
-- ARGV: cost [, Q, R]. Window index = Q * k + j. State: three packed doubles sq, sj, count.
local L, limit, period, k = {{PARAMS}}
local cost = tonumber(ARGV[1])
if cost > limit then return too_big(limit) end
local q, r = now_qr(L)
local off = fmod(r, period)
local j = (r - off) / period
local iq, ij, count, until_end = q, j, 0, period - off
local key = KEYS[1]
local raw = redis.call('GET', key)
if raw then
  if #raw ~= 24 then return corrupt(key) end
  local sq, sj, sc = struct.unpack('<ddd', raw)
  if sq % 1 ~= 0 or sj % 1 ~= 0 or sc % 1 ~= 0 then return corrupt(key) end
  local ahead = (q - sq) * k + (j - sj)
  if ahead == 0 then
    count = sc
  elseif ahead == -1 then
    iq, ij, count, until_end = sq, sj, sc, 2 * period - off
  end
end
local available = limit - count
if available < 0 then available = 0 end
if cost <= available then
  local used = count + cost
  local reset = until_end
  if used == 0 then reset = 0 end
  if cost > 0 then
    store(key, struct.pack('<ddd', iq, ij, used), reset)
  end
  return reply(1, limit, available - cost, 0, reset)
end
return reply(0, limit, available, until_end, until_end)
