-- Sliding window counter. Constants: L (unit), limit, period, k (= L / period).
-- ARGV: cost [, Q, R]. Window index = Q * k + j. State: four packed doubles sq, sj, previous,
-- current.
local L, limit, period, k = {{PARAMS}}
local cost = tonumber(ARGV[1])
if cost > limit then return too_big(limit) end
local q, r = now_qr(L)
local off = fmod(r, period)
local j = (r - off) / period
-- The view: index, previous, current, offset, lead.
local iq, ij, prev, cur, vo, lead = q, j, 0, 0, off, 0
local key = KEYS[1]
local raw = redis.call('GET', key)
if raw then
  if #raw ~= 32 then return corrupt(key) end
  local sq, sj, sp, sc = struct.unpack('<dddd', raw)
  if sq % 1 ~= 0 or sj % 1 ~= 0 or sp % 1 ~= 0 or sc % 1 ~= 0 then return corrupt(key) end
  local ahead = (q - sq) * k + (j - sj)
  if ahead == 0 then
    prev, cur = sp, sc
  elseif ahead == 1 then
    prev = sc
  elseif ahead == -1 then
    iq, ij, prev, cur, vo, lead = sq, sj, sp, sc, 0, period - off
  end
end
local function until_fresh(current)
  local to_next = period - vo
  if current > 0 then return lead + to_next + period end
  if prev > 0 then return lead + to_next end
  return 0
end
local used = cur + muldiv_ceil(prev, period - vo, period)
local available = limit - used
if available < 0 then available = 0 end
if cost <= available then
  local current = cur + cost
  local reset = until_fresh(current)
  if cost > 0 then
    store(key, struct.pack('<dddd', iq, ij, prev, current), reset)
  end
  return reply(1, limit, available - cost, 0, reset)
end
local function wait()
  if prev > 0 and cur + cost <= limit then
    local room = limit - cur - cost
    local fade = muldiv(room, period, prev)
    if fade > period then fade = period end
    local at = period - fade
    if at < period then return at - vo end
  end
  local to_next = period - vo
  local at = 0
  if cur > 0 then
    local x = muldiv(limit - cost, period, cur)
    if x > period then x = period end
    at = period - x
  end
  return to_next + at
end
return reply(0, limit, available, lead + wait(), until_fresh(cur))
