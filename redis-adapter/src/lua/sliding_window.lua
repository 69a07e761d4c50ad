-- Sliding window counter. Constants: L (unit), limit, period, k (= L / period).
-- ARGV: cost [, Q, R]. Window index = Q * k + j. State: four packed doubles sq, sj, previous,
-- current.
local L, limit, period, k = {{PARAMS}}
local cost = tonumber(ARGV[1])
if cost > limit then return too_big(limit) end
local q, r = now_qr(L)
local off = fmod(r, period)
local j = (r - off) / period
-- The view: index, previous, current, offset into the viewed window.
local iq, ij, prev, cur, vo = q, j, 0, 0, off
-- When now reads before the stored window, the view is that window's start, lu * L + lr from
-- now (lu whole units, 0 <= lr < L): split so that it stays exact however far ahead it is.
local behind, lu, lr = false, 0, 0
local key = KEYS[1]
local raw = redis.call('GET', key)
if raw then
  if #raw ~= 32 then return corrupt(key) end
  local sq, sj, sp, sc = struct.unpack('<dddd', raw)
  if sq % 1 ~= 0 or sj % 1 ~= 0 or sp % 1 ~= 0 or sc % 1 ~= 0 then return corrupt(key) end
  -- Exact when it is -1, 0 or 1; otherwise its sign is right and its magnitude at least 2.
  local ahead = (q - sq) * k + (j - sj)
  if ahead == 0 then
    prev, cur = sp, sc
  elseif ahead == 1 then
    prev = sc
  elseif ahead < 0 then
    -- Behind by any number of windows (a caller's clock, or Redis TIME stepped back): charge
    -- the stored window with both counts as they are, and never move it back.
    iq, ij, prev, cur, vo = sq, sj, sp, sc, 0
    behind, lu, lr = true, sq - q, sj * period - r
    if lr < 0 then lu, lr = lu - 1, lr + L end
  end
end
local used = cur + muldiv_ceil(prev, period - vo, period)
local available = limit - used
if available < 0 then available = 0 end
local admit = cost <= available
local current = cur
if admit then current = cur + cost end
-- From the viewed moment until the key is fresh; -1 when it is fresh already.
local to_next = period - vo
local fresh = -1
if current > 0 then
  fresh = to_next + period
elseif prev > 0 then
  fresh = to_next
end
if admit and cost > 0 then
  store(key, struct.pack('<dddd', iq, ij, prev, current), lu * L + lr + fresh)
end
-- From the viewed moment until `cost` would be admitted (the view denies it).
local function wait()
  if prev > 0 and cur + cost <= limit then
    local room = limit - cur - cost
    local fade = muldiv(room, period, prev)
    if fade > period then fade = period end
    local at = period - fade
    if at < period then return at - vo end
  end
  local at = 0
  if cur > 0 then
    local x = muldiv(limit - cost, period, cur)
    if x > period then x = period end
    at = period - x
  end
  return to_next + at
end
if not behind then
  local reset = fresh
  if reset < 0 then reset = 0 end
  if admit then return reply(1, limit, available - cost, 0, reset) end
  return reply(0, limit, available, wait(), reset)
end
-- Behind: every duration is the lead plus x (0 <= x <= 2 * period), as (units, rest).
local function later(x)
  local u = lu
  while x >= L do u, x = u + 1, x - L end
  if x >= L - lr then return u + 1, x - (L - lr) end
  return u, lr + x
end
local su, sr = 0, 0
if fresh >= 0 then su, sr = later(fresh) end
local allowed, remaining, ru, rr = 1, available - cost, 0, 0
if not admit then
  allowed, remaining = 0, available
  ru, rr = later(wait())
end
local retry, reset = ru * L + rr, su * L + sr
if retry < TWO53 and reset < TWO53 then return reply(allowed, limit, remaining, retry, reset) end
return struct.pack('<ddddddd', allowed, limit, remaining, ru, rr, su, sr)
