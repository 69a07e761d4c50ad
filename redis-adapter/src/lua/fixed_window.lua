-- Fixed window. Constants: L (unit), limit, period, k (= L / period).
-- ARGV: cost [, Q, R]. Window index = Q * k + j. State: three packed doubles sq, sj, count.
local L, limit, period, k = {{PARAMS}}
local cost = tonumber(ARGV[1])
if cost > limit then return too_big(limit) end
local q, r = now_qr(L)
local off = fmod(r, period)
local j = (r - off) / period
-- The charged window, its count, and the time from now to its end as eu * L + er (eu whole
-- units, 0 <= er <= L), split so that it stays exact for a window any distance ahead of now.
local iq, ij, count, eu, er = q, j, 0, 0, period - off
local key = KEYS[1]
local raw = redis.call('GET', key)
if raw then
  if #raw ~= 24 then return corrupt(key) end
  local sq, sj, sc = struct.unpack('<ddd', raw)
  if sq % 1 ~= 0 or sj % 1 ~= 0 or sc % 1 ~= 0 then return corrupt(key) end
  -- Exact when it is -1, 0 or 1; otherwise its sign is right and its magnitude at least 2.
  local ahead = (q - sq) * k + (j - sj)
  if ahead == 0 then
    count = sc
  elseif ahead < 0 then
    -- Now reads before the stored window, by any number of windows (a caller's clock, or
    -- Redis TIME stepped back): charge the stored window as it is, and never move it back.
    iq, ij, count = sq, sj, sc
    eu, er = sq - q, (sj + 1) * period - r
    if er < 0 then eu, er = eu - 1, er + L end
  end
end
-- Exact below 2^53; a larger figure is only ever sent split.
local until_end = eu * L + er
local available = limit - count
if available < 0 then available = 0 end
if cost <= available then
  local used = count + cost
  if cost > 0 then
    store(key, struct.pack('<ddd', iq, ij, used), until_end)
  end
  if used == 0 then return reply(1, limit, available - cost, 0, 0) end
  if until_end < TWO53 then return reply(1, limit, available - cost, 0, until_end) end
  return struct.pack('<ddddddd', 1, limit, available - cost, 0, 0, eu, er)
end
if until_end < TWO53 then return reply(0, limit, available, until_end, until_end) end
return struct.pack('<ddddddd', 0, limit, available, eu, er, eu, er)
