-- Several GCRA / leaky-bucket limits on keys of one hash slot, charged all or none.
-- Constants: per limit, in KEYS order, L (unit), T (interval), tol (tolerance), burst.
-- ARGV: cost [, Q1, R1, Q2, R2, ...] (the caller's time split per limit's unit).
-- Limits are decided in order exactly as the single script decides each, nothing is written
-- until every one admits, and then every one is written: the first limit that cannot take the
-- cost at all, or cannot take it now, answers alone (as traffik-core's check_all does).
local P = { {{PARAMS}} }
local cost = tonumber(ARGV[1])
local s, ns
if not ARGV[2] then
  local t = redis.call('TIME')
  s, ns = tonumber(t[1]), tonumber(t[2]) * 1000
end
local writes = {}
local limit, left, reset = nil, nil, 0
for i = 1, #KEYS do
  local j = 4 * (i - 1)
  local L, T, tol, burst = P[j + 1], P[j + 2], P[j + 3], P[j + 4]
  if cost > burst then return too_big(burst) end
  local q, r
  if s then
    if fmod(L, 1000000000) == 0 then
      local m = L / 1000000000
      local sr = fmod(s, m)
      q, r = (s - sr) / m, sr * 1000000000 + ns
    else
      q, r = divmod(s, 1000000000, ns, L)
    end
  else
    q, r = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  end
  local key = KEYS[i]
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
  if n > tol then
    local room = tol - b
    if room < 0 then room = 0 end
    return reply(0, burst, math.floor(room / T), n - tol, b)
  end
  local rem = math.floor((tol - n) / T)
  -- The binding limit: the least left, the earliest on a tie.
  if left == nil or rem < left then limit, left = burst, rem end
  if n > reset then reset = n end
  writes[i] = { q, r, n, L }
end
if cost > 0 then
  for i = 1, #KEYS do
    local w = writes[i]
    local tq, tr = divmod(1, w[2], w[3], w[4])
    store(KEYS[i], struct.pack('<dd', w[1] + tq, tr), w[3])
  end
end
return reply(1, limit, left, 0, reset)
