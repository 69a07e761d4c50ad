-- Several limits on keys of one hash slot, charged all or none. Each limit is GCRA / leaky
-- bucket (kind 0: L, T, tol, burst) or the token bucket (kind 1: L, cap, limit, period, KL),
-- deciding exactly as gcra.lua and token_bucket.lua do.
-- ARGV: cost [, Q1, R1, Q2, R2, ...] (the caller's time split per limit's unit).
-- Limits are decided in KEYS order and nothing is written until every one admits; then every
-- one is written. The first limit that cannot take the cost at all, or cannot take it now,
-- answers alone (as traffik-core's check_all does).
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
  local c = P[i]
  local L = c[2]
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
  local cap, rem, value, until_fresh
  if c[1] == 0 then
    local T, tol, burst = c[3], c[4], c[5]
    cap = burst
    if cost > burst then return too_big(burst) end
    local b, err = packed_ahead(key, q, r, L)
    if not b then return err end
    local n = b + cost * T
    if n > tol then
      local room = tol - b
      if room < 0 then room = 0 end
      return reply(0, burst, math.floor(room / T), n - tol, b)
    end
    rem = math.floor((tol - n) / T)
    local tq, tr = divmod(1, r, n, L)
    value, until_fresh = struct.pack('<dd', q + tq, tr), n
  else
    local limit_, period, KL = c[4], c[5], c[6]
    cap = c[3]
    if cost > cap then return too_big(cap) end
    local p = muldiv(r, limit_, period)
    local short, err = packed_ahead(key, q, p, KL)
    if not short then return err end
    local function after(x)
      local t = muldiv_ceil(x, period, limit_) - r
      if t < 0 then return 0 end
      return t
    end
    local available = cap - short
    if available < 0 then available = 0 end
    if cost > available then
      return reply(0, cap, available, after(p + short + cost - cap), after(p + short))
    end
    local x = p + short + cost
    rem = available - cost
    local dq, dm = divmod(1, x, 0, KL)
    value, until_fresh = struct.pack('<dd', q + dq, dm), after(x)
  end
  -- The binding limit: the least left, the earliest on a tie.
  if left == nil or rem < left then limit, left = cap, rem end
  if until_fresh > reset then reset = until_fresh end
  writes[i] = { value, until_fresh }
end
if cost > 0 then
  for i = 1, #KEYS do
    store(KEYS[i], writes[i][1], writes[i][2])
  end
end
return reply(1, limit, left, 0, reset)
