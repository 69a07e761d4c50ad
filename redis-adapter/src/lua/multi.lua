-- Several limits on keys of one hash slot, charged all or none. Each limit is a kind and that
-- algorithm's constants, as its own script names them: 0 GCRA / leaky bucket (L, T, tol,
-- burst), 1 token bucket (L, cap, limit, period, KL), 2 fixed window (L, limit, period, k),
-- 3 sliding window counter (L, limit, period, k), 4 sliding window log (L, limit, period; two
-- keys: log and meta), 5 debt bucket (L, cap, debt, limit, period, KL), 6 quota rollover (L,
-- limit, period, k, num, den, cap, maxc). Each decides with the same helper as its own script.
-- ARGV: cost [, Q1, R1, Q2, R2, ...] (the caller's time split per limit's unit).
-- Limits are decided in order and nothing is written until every one admits; then every one
-- is written. The first limit that cannot take the cost at all, or cannot take it now,
-- answers alone (as traffik-core's check_all does). A duration of 2^53 ns or more is sent
-- split in whole seconds and nanoseconds, whatever the units of the limits.
local P = { {{PARAMS}} }
local S = 1000000000
local cost = tonumber(ARGV[1])
local s, ns
if not ARGV[2] then
  local t = redis.call('TIME')
  s, ns = tonumber(t[1]), tonumber(t[2]) * 1000
end
-- A decision of a limit of unit L: as its own script sends it when both durations are below
-- 2^53 ns, else both split in seconds.
local function alone(allowed, limit, remaining, ru, rr, su, sr, L)
  local retry, reset = ru * L + rr, su * L + sr
  if retry < TWO53 and reset < TWO53 then return reply(allowed, limit, remaining, retry, reset) end
  local rs, rn = divmod(ru, L, rr, S)
  local xs, xn = divmod(su, L, sr, S)
  return struct.pack('<ddddddd', allowed, limit, remaining, rs, rn, xs, xn)
end
local writes = {}
local limit, left, reset_s, reset_n = nil, nil, 0, 0
local ki = 1
for i = 1, #P do
  local c = P[i]
  local kind, L = c[1], c[2]
  local q, r
  if s then
    if fmod(L, S) == 0 then
      local m = L / S
      local sr = fmod(s, m)
      q, r = (s - sr) / m, sr * S + ns
    else
      q, r = divmod(s, S, ns, L)
    end
  else
    q, r = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  end
  local key = KEYS[ki]
  local most, allowed, rem, ru, rr, su, sr, w1, w2
  if kind == 0 then
    most = c[5]
    if cost > most then return too_big(most) end
    allowed, rem, ru, rr, su, sr, w1, w2 = gcra_decide(key, q, r, L, c[3], c[4], cost)
  elseif kind == 1 then
    most = c[3]
    if cost > most then return too_big(most) end
    allowed, rem, ru, rr, su, sr, w1, w2 =
      bucket_decide(key, q, r, c[3], 0, c[4], c[5], c[6], cost)
  elseif kind == 5 then
    most = c[3] + c[4]
    if cost > most then return too_big(most) end
    allowed, rem, ru, rr, su, sr, w1, w2 =
      bucket_decide(key, q, r, c[3], c[4], c[5], c[6], c[7], cost)
  elseif kind == 2 then
    most = c[3]
    if cost > most then return too_big(most) end
    allowed, rem, ru, rr, su, sr, w1, w2 = fixed_decide(key, q, r, L, c[3], c[4], c[5], cost)
  elseif kind == 3 then
    most = c[3]
    if cost > most then return too_big(most) end
    allowed, rem, ru, rr, su, sr, w1, w2 =
      sliding_decide(key, q, r, L, c[3], c[4], c[5], cost)
  elseif kind == 4 then
    most = c[3]
    if cost > most then return too_big(most) end
    allowed, rem, ru, rr, su, sr, w1, w2 =
      log_decide(key, KEYS[ki + 1], q, r, L, c[3], c[4], cost)
  else
    most = c[3] + c[9]
    if cost > most then return too_big(most) end
    allowed, rem, ru, rr, su, sr, w1, w2 =
      rollover_decide(key, q, r, L, c[3], c[4], c[5], c[6], c[7], c[8], c[9], cost)
  end
  if not allowed then return rem end
  if allowed == 0 then return alone(0, most, rem, ru, rr, su, sr, L) end
  -- The binding limit: the least left, the earliest on a tie; the longest reset.
  if left == nil or rem < left then limit, left = most, rem end
  local xs, xn = divmod(su, L, sr, S)
  if xs > reset_s or (xs == reset_s and xn > reset_n) then reset_s, reset_n = xs, xn end
  if w1 then writes[#writes + 1] = { kind, ki, w1, w2, su * L + sr } end
  if kind == 4 then ki = ki + 2 else ki = ki + 1 end
end
for _, w in ipairs(writes) do
  if w[1] == 4 then
    log_store(KEYS[w[2]], KEYS[w[2] + 1], cost, w[3], w[4], w[5])
  else
    store(KEYS[w[2]], w[3], w[4])
  end
end
local reset = reset_s * S + reset_n
if reset < TWO53 then return reply(1, limit, left, 0, reset) end
return struct.pack('<ddddddd', 1, limit, left, 0, 0, reset_s, reset_n)
