-- Quota with rollover. Constants: L (unit), limit, period, k (= L / period), num, den (the
-- fraction), cap (the carry cap, at most limit), maxc (the largest carry). ARGV: cost [, Q, R].
-- Window index = Q * k + j. State: four packed doubles sq, sj, used, carried. A period that used
-- u passes min(floor((limit - u) * num / den), cap) on to the next (nothing when u >= limit); a
-- period nobody charged passes maxc on, and a missing key is a period that received maxc.
local L, limit, period, k, num, den, cap, maxc = {{PARAMS}}
local most = limit + maxc
local cost = tonumber(ARGV[1])
if cost > most then return too_big(most) end
local function carry(u)
  if u >= limit then return 0 end
  local c = muldiv(limit - u, num, den)
  if c > cap then return cap end
  return c
end
local q, r = now_qr(L)
local off = fmod(r, period)
local j = (r - off) / period
-- The charged window, its use and carry, and the time from now to its end as eu * L + er (eu
-- whole units, 0 <= er <= L), split so that it stays exact for a window any distance ahead.
local iq, ij, used, carried, eu, er = q, j, 0, maxc, 0, period - off
local key = KEYS[1]
local raw = redis.call('GET', key)
if raw then
  if #raw ~= 32 then return corrupt(key) end
  local sq, sj, su, sc = struct.unpack('<dddd', raw)
  if sq % 1 ~= 0 or sj % 1 ~= 0 or su % 1 ~= 0 or sc % 1 ~= 0 then return corrupt(key) end
  -- Exact when it is -1, 0 or 1; otherwise its sign is right and its magnitude at least 2.
  local ahead = (q - sq) * k + (j - sj)
  if ahead == 0 then
    used, carried = su, sc
  elseif ahead == 1 then
    carried = carry(su)
  elseif ahead < 0 then
    -- Now reads before the stored window: charge the stored window as it is.
    iq, ij, used, carried = sq, sj, su, sc
    eu, er = sq - q, (sj + 1) * period - r
    if er < 0 then eu, er = eu - 1, er + L end
  end
end
-- The end of the window, plus one period when `later` (split the same way).
local function span(later)
  if not later then return eu, er end
  local u, x = eu, er + period
  if x > L then u, x = u + 1, x - L end
  return u, x
end
-- Until the key is fresh with use u and carry c in the viewed window.
local function fresh(u, c)
  if u == 0 and c == maxc then return 0, 0 end
  return span(carry(u) ~= maxc)
end
local available = limit + carried - used
if available < 0 then available = 0 end
local allowed, remaining, ru, rr, su, sr
if cost <= available then
  allowed, remaining, ru, rr = 1, available - cost, 0, 0
  su, sr = fresh(used + cost, carried)
  if cost > 0 then
    store(key, struct.pack('<dddd', iq, ij, used + cost, carried), su * L + sr)
  end
else
  allowed, remaining = 0, available
  ru, rr = span(cost > limit + carry(used))
  su, sr = fresh(used, carried)
end
local retry, reset = ru * L + rr, su * L + sr
if retry < TWO53 and reset < TWO53 then
  return reply(allowed, most, remaining, retry, reset)
end
return struct.pack('<ddddddd', allowed, most, remaining, ru, rr, su, sr)
