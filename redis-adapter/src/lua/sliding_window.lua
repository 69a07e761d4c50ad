-- Sliding window counter. ARGV: mode, Q, R, cost, L, limit, period, k (= L / period).
-- Window index = Q * k + j. State "sq:sj:previous:current".
local cost = tonumber(ARGV[4])
local L = tonumber(ARGV[5])
local limit = tonumber(ARGV[6])
local period = tonumber(ARGV[7])
local k = tonumber(ARGV[8])
if cost > limit then return {-1, limit} end
local q, r = now_qr(L)
local off = math.fmod(r, period)
local j = (r - off) / period
-- The view: index, previous, current, offset, lead.
local iq, ij, prev, cur, vo, lead = q, j, 0, 0, off, 0
local raw = redis.call('GET', KEYS[1])
if raw then
  local f = fields(raw, 4)
  if not f then return corrupt(KEYS[1]) end
  local ahead = (q - f[1]) * k + (j - f[2])
  if ahead == 0 then
    prev, cur = f[3], f[4]
  elseif ahead == 1 then
    prev = f[4]
  elseif ahead == -1 then
    iq, ij, prev, cur, vo, lead = f[1], f[2], f[3], f[4], 0, period - off
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
    store(KEYS[1], num(iq) .. ':' .. num(ij) .. ':' .. num(prev) .. ':' .. num(current), reset)
  end
  return {1, limit, available - cost, 0, reset}
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
return {0, limit, available, lead + wait(), until_fresh(cur)}
