-- traffik-redis shared prelude: exact integer helpers over Lua doubles.
-- Every integer here stays below 2^53, where doubles are exact. Absolute time is never
-- formed: a reading is split as now = Q * L + R (0 <= R < L), with L a per-limiter unit.
local TWO53 = 9007199254740992

-- floor((a * b + c) / d) and (a * b + c) mod d, exact for integers a, b, c, d in [0, 2^52)
-- (d > 0) whenever the quotient is below 2^53.
local function divmod(a, b, c, d)
  local x = a * b + c
  if x < TWO53 then
    local r = math.fmod(x, d)
    return (x - r) / d, r
  end
  local ra = math.fmod(a, d)
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
  local r2 = math.fmod(r, d)
  return whole + q + (r - r2) / d, r2
end

-- floor(a * b / d) and ceil(a * b / d).
local function muldiv(a, b, d)
  local q = divmod(a, b, 0, d)
  return q
end
local function muldiv_ceil(a, b, d)
  local q, r = divmod(a, b, 0, d)
  if r > 0 then q = q + 1 end
  return q
end

local function num(s)
  return string.format('%.0f', s)
end

-- The time of this call as (Q, R). ARGV[1] = '0': Redis TIME (microseconds); otherwise the
-- caller's reading, pre-split by the client, in ARGV[2] and ARGV[3].
local function now_qr(L)
  if ARGV[1] == '0' then
    local t = redis.call('TIME')
    local s, ns = tonumber(t[1]), tonumber(t[2]) * 1000
    if math.fmod(L, 1000000000) == 0 then
      -- Whole seconds per unit (every period of 1 s and above that is whole seconds).
      local m = L / 1000000000
      local sr = math.fmod(s, m)
      return (s - sr) / m, sr * 1000000000 + ns
    end
    return divmod(s, 1000000000, ns, L)
  end
  return tonumber(ARGV[2]), tonumber(ARGV[3])
end

-- The TTL for a state that is fresh again in `ns`: rounded up to whole milliseconds, plus one
-- because Redis stamps the expiry from its millisecond clock truncated (a key set at x.9 ms with
-- PX n can vanish n - 0.9 ms later). Never below 2 ms, so never 0.
local function ttl_ms(ns)
  local ms = math.ceil(ns / 1000000)
  if ms < 1 then ms = 1 end
  return ms + 1
end

local function store(key, value, ns)
  redis.call('SET', key, value, 'PX', ttl_ms(ns))
end

local function corrupt(key)
  return redis.error_reply('TRAFFIK_CORRUPT state at ' .. key .. ' is not a traffik state')
end

local function fields(s, n)
  if type(s) ~= 'string' then return nil end
  local out = {}
  for part in string.gmatch(s, '[^:]+') do
    local v = tonumber(part)
    if v == nil or v ~= math.floor(v) then return nil end
    out[#out + 1] = v
  end
  if #out ~= n then return nil end
  return out
end
