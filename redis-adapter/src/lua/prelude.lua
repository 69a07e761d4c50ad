-- traffik-redis shared prelude: exact integer helpers over Lua doubles.
-- Every integer here stays below 2^53, where doubles are exact. Absolute time is never
-- formed: a reading is split as now = Q * L + R (0 <= R < L), with L a per-limiter unit.
--
-- Hot-path rules (every line here runs on every check, in Redis's single thread):
-- * the per-limiter constants are Lua literals in the script text (the client generates one
--   script per configuration), so ARGV is only cost [, Q, R];
-- * state is stored as little-endian doubles with struct.pack: no string.format or tonumber
--   parsing; the reply is one packed string of doubles instead of a Lua table;
-- * the exact shift-and-add division only runs when a product passes 2^53;
-- * each "--@ name" section below is a helper that the client includes only in the scripts that
--   call it (every `local function` is a closure created afresh on every call).
local TWO53 = 9007199254740992
local fmod = math.fmod

--@ divmod
-- floor((a * b + c) / d) and (a * b + c) mod d, exact for integers a, b, c, d in [0, 2^52)
-- (d > 0) whenever the quotient is below 2^53.
local function divmod(a, b, c, d)
  local x = a * b + c
  if x < TWO53 then
    local r = fmod(x, d)
    return (x - r) / d, r
  end
  local ra = fmod(a, d)
  local whole = ((a - ra) / d) * b
  local q, r = 0, 0
  local p = 1
  while p * 2 <= b do p = p * 2 end
  local rest = b
  while p >= 1 do
    q = q * 2
    r = r * 2
    if r >= d then r = r - d; q = q + 1 end
    if rest >= p then
      rest = rest - p
      r = r + ra
      if r >= d then r = r - d; q = q + 1 end
    end
    p = p / 2
  end
  r = r + c
  local r2 = fmod(r, d)
  return whole + q + (r - r2) / d, r2
end

--@ now_qr
-- The time of this call as (Q, R): the caller's reading, pre-split by the client, in ARGV[at]
-- and ARGV[at + 1] (at defaults to 2); without them Redis TIME (microseconds).
local function now_qr(L, at)
  at = at or 2
  local aq = ARGV[at]
  if aq then return tonumber(aq), tonumber(ARGV[at + 1]) end
  local t = redis.call('TIME')
  local s, ns = tonumber(t[1]), tonumber(t[2]) * 1000
  if fmod(L, 1000000000) == 0 then
    -- Whole seconds per unit (every period of 1 s and above that is whole seconds).
    local m = L / 1000000000
    local sr = fmod(s, m)
    return (s - sr) / m, sr * 1000000000 + ns
  end
  return divmod(s, 1000000000, ns, L)
end

--@ store
-- Stores a packed state with a TTL for a state that is fresh again in `ns`: rounded up to whole
-- milliseconds, plus one because Redis stamps the expiry from its millisecond clock truncated
-- (a key set at x.9 ms with PX n can vanish n - 0.9 ms later). Never below 2 ms, so never 0.
local function store(key, value, ns)
  local ms = math.ceil(ns / 1000000)
  if ms < 1 then ms = 1 end
  redis.call('SET', key, value, 'PX', ms + 1)
end

--@ corrupt
local function corrupt(key)
  return redis.error_reply('TRAFFIK_CORRUPT state at ' .. key .. ' is not a traffik state')
end

--@ packed_ahead
-- How far the state at `key`, two packed whole doubles hi, lo meaning hi * unit + lo (a GCRA
-- TAT, or a token bucket's tokens taken), runs ahead of now = q * unit + lo_now: 0 when the key
-- is absent or behind. nil and the error reply when the value is not one a script wrote.
local function packed_ahead(key, q, lo_now, unit)
  local raw = redis.call('GET', key)
  if not raw then return 0 end
  if #raw ~= 16 then return nil, corrupt(key) end
  local hi, lo = struct.unpack('<dd', raw)
  if hi % 1 ~= 0 or lo % 1 ~= 0 then return nil, corrupt(key) end
  local d = (hi - q) * unit + (lo - lo_now)
  if d > 0 then return d end
  return 0
end

--@ muldiv
-- floor(a * b / d) and ceil(a * b / d).
local function muldiv(a, b, d)
  local q = divmod(a, b, 0, d)
  return q
end
--@ muldiv_ceil
local function muldiv_ceil(a, b, d)
  local q, r = divmod(a, b, 0, d)
  if r > 0 then q = q + 1 end
  return q
end

--@ reply
-- The reply: allowed, limit, remaining, retry_after, reset_after as five packed doubles (all
-- integers below 2^53); a cost the limit can never admit is two doubles, -1 and the maximum.
-- The window scripts send a duration of 2^53 ns or more (a check whose time reads far before
-- the key's window) as seven doubles instead: allowed, limit, remaining, then retry_after and
-- reset_after each as whole units u and a rest r (the duration is u * L + r).
local function reply(allowed, limit, remaining, retry, reset)
  return struct.pack('<ddddd', allowed, limit, remaining, retry, reset)
end
--@ too_big
local function too_big(max)
  return struct.pack('<dd', -1, max)
end

--@ gcra_answer
-- A GCRA check with the TAT `b` ahead of now = q * L + r: admitted when b + cost * T fits in the
-- tolerance, then the new TAT is stored (for a positive cost) and the reply made.
local function gcra_answer(key, q, r, L, T, tol, burst, cost, b)
  local n = b + cost * T
  if n <= tol then
    if cost > 0 then
      local tq, tr = divmod(1, r, n, L)
      store(key, struct.pack('<dd', q + tq, tr), n)
    end
    return reply(1, burst, math.floor((tol - n) / T), 0, n)
  end
  local room = tol - b
  if room < 0 then room = 0 end
  return reply(0, burst, math.floor(room / T), n - tol, b)
end
