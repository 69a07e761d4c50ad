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

--@ answer
-- A decision as the reply, each duration given as whole units and a rest (u * L + r): five
-- doubles when both durations are below 2^53 ns, seven (the split form) otherwise.
local function answer(allowed, limit, remaining, ru, rr, su, sr, L)
  local retry, reset = ru * L + rr, su * L + sr
  if retry < TWO53 and reset < TWO53 then return reply(allowed, limit, remaining, retry, reset) end
  return struct.pack('<ddddddd', allowed, limit, remaining, ru, rr, su, sr)
end

-- The "decide" helpers below read one limit's state and decide a check on it without writing
-- anything, so that the single scripts and the multi-limit script share one copy. Each returns
--   allowed (1 or 0), remaining, ru, rr, su, sr, w1, w2
-- with retry_after = ru * L + rr and reset_after = su * L + sr, and the pending write w1, w2
-- (nil when nothing is to be written: a denial or a zero cost); or nil and the error reply for
-- a state no script wrote. For the packed states, w1 is the value to store and w2 its lifetime.

--@ settle
-- A single script's end: the error, or the pending write made and the decision sent.
local function settle(key, limit, L, allowed, remaining, ru, rr, su, sr, value, ns)
  if not allowed then return remaining end
  if value then store(key, value, ns) end
  return answer(allowed, limit, remaining, ru, rr, su, sr, L)
end

--@ gcra_decide
-- GCRA / leaky bucket at now = q * L + r: admitted when the TAT's lead plus cost * T fits in
-- the tolerance; the new TAT is two packed doubles tq, tr with TAT = tq * L + tr.
local function gcra_decide(key, q, r, L, T, tol, cost)
  local b, err = packed_ahead(key, q, r, L)
  if not b then return nil, err end
  local n = b + cost * T
  if n <= tol then
    local value
    if cost > 0 then
      local tq, tr = divmod(1, r, n, L)
      value = struct.pack('<dd', q + tq, tr)
    end
    return 1, math.floor((tol - n) / T), 0, 0, 0, n, value, n
  end
  local room = tol - b
  if room < 0 then room = 0 end
  return 0, math.floor(room / T), 0, n - tol, 0, b
end

--@ bucket_decide
-- Token bucket (debt 0) or debt bucket at now = q * L + r. Produced by now: P = q * KL + p. The
-- state is D, the tokens taken on the production schedule, as two packed doubles dq, dm with
-- D = dq * KL + dm. A check is admitted when the key owes nothing (shortfall <= cap) and the
-- charge leaves it owing at most `debt` (shortfall + cost <= cap + debt).
local function bucket_decide(key, q, r, cap, debt, limit, period, KL, cost)
  local most = cap + debt
  local p = muldiv(r, limit, period)
  local short, err = packed_ahead(key, q, p, KL)
  if not short then return nil, err end
  -- time_for(Q * KL + x) - now = ceil(x * period / limit) - R, floored at 0.
  local function after(x)
    local t = muldiv_ceil(x, period, limit) - r
    if t < 0 then return 0 end
    return t
  end
  -- The largest cost admitted with a shortfall of s: most - s, or 0 while s > cap.
  local available = 0
  if short <= cap then available = most - short end
  if cost <= available then
    local x = p + short + cost
    local reset = after(x)
    local value
    if cost > 0 then
      local dq, dm = divmod(1, x, 0, KL)
      value = struct.pack('<dd', q + dq, dm)
    end
    local left = 0
    if short + cost <= cap then left = most - short - cost end
    return 1, left, 0, 0, 0, reset, value, reset
  end
  -- Admitted once the shortfall is down to min(cap, most - cost).
  local room = most - cost
  if cap < room then room = cap end
  return 0, available, 0, after(p + short - room), 0, after(p + short)
end

--@ fixed_decide
-- Fixed window at now = q * L + r, k = L / period. Window index = Q * k + j. State: three packed
-- doubles sq, sj, count.
local function fixed_decide(key, q, r, L, limit, period, k, cost)
  local off = fmod(r, period)
  local j = (r - off) / period
  -- The charged window, its count, and the time from now to its end as eu * L + er (eu whole
  -- units, 0 <= er <= L), split so that it stays exact for a window any distance ahead of now.
  local iq, ij, count, eu, er = q, j, 0, 0, period - off
  local raw = redis.call('GET', key)
  if raw then
    if #raw ~= 24 then return nil, corrupt(key) end
    local sq, sj, sc = struct.unpack('<ddd', raw)
    if sq % 1 ~= 0 or sj % 1 ~= 0 or sc % 1 ~= 0 then return nil, corrupt(key) end
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
  local available = limit - count
  if available < 0 then available = 0 end
  if cost <= available then
    local used = count + cost
    if used == 0 then return 1, available - cost, 0, 0, 0, 0 end
    local value
    if cost > 0 then value = struct.pack('<ddd', iq, ij, used) end
    -- Exact below 2^53; a larger TTL is far beyond any the key could need.
    return 1, available - cost, 0, 0, eu, er, value, eu * L + er
  end
  return 0, available, eu, er, eu, er
end

--@ sliding_decide
-- Sliding window counter at now = q * L + r, k = L / period. Window index = Q * k + j. State:
-- four packed doubles sq, sj, previous, current.
local function sliding_decide(key, q, r, L, limit, period, k, cost)
  local off = fmod(r, period)
  local j = (r - off) / period
  -- The view: index, previous, current, offset into the viewed window.
  local iq, ij, prev, cur, vo = q, j, 0, 0, off
  -- When now reads before the stored window, the view is that window's start, lu * L + lr from
  -- now (lu whole units, 0 <= lr < L): split so that it stays exact however far ahead it is.
  local behind, lu, lr = false, 0, 0
  local raw = redis.call('GET', key)
  if raw then
    if #raw ~= 32 then return nil, corrupt(key) end
    local sq, sj, sp, sc = struct.unpack('<dddd', raw)
    if sq % 1 ~= 0 or sj % 1 ~= 0 or sp % 1 ~= 0 or sc % 1 ~= 0 then
      return nil, corrupt(key)
    end
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
  local value, ttl
  if admit and cost > 0 then
    value, ttl = struct.pack('<dddd', iq, ij, prev, current), lu * L + lr + fresh
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
    if admit then return 1, available - cost, 0, 0, 0, reset, value, ttl end
    return 0, available, 0, wait(), 0, reset
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
  if admit then return 1, available - cost, 0, 0, su, sr, value, ttl end
  local ru, rr = later(wait())
  return 0, available, ru, rr, su, sr
end

--@ rollover_decide
-- Quota with rollover at now = q * L + r, k = L / period; num / den the fraction, cap the carry
-- cap (at most limit), maxc the largest carry. Window index = Q * k + j. State: four packed
-- doubles sq, sj, used, carried. A period that used u passes min(floor((limit - u) * num / den),
-- cap) on to the next (nothing when u >= limit); a period nobody charged passes maxc on, and a
-- missing key is a period that received maxc.
local function rollover_decide(key, q, r, L, limit, period, k, num, den, cap, maxc, cost)
  local function carry(u)
    if u >= limit then return 0 end
    local c = muldiv(limit - u, num, den)
    if c > cap then return cap end
    return c
  end
  local off = fmod(r, period)
  local j = (r - off) / period
  -- The charged window, its use and carry, and the time from now to its end as eu * L + er (eu
  -- whole units, 0 <= er <= L), split so that it stays exact for a window any distance ahead.
  local iq, ij, used, carried, eu, er = q, j, 0, maxc, 0, period - off
  local raw = redis.call('GET', key)
  if raw then
    if #raw ~= 32 then return nil, corrupt(key) end
    local sq, sj, su, sc = struct.unpack('<dddd', raw)
    if sq % 1 ~= 0 or sj % 1 ~= 0 or su % 1 ~= 0 or sc % 1 ~= 0 then
      return nil, corrupt(key)
    end
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
  if cost <= available then
    local su, sr = fresh(used + cost, carried)
    local value
    if cost > 0 then value = struct.pack('<dddd', iq, ij, used + cost, carried) end
    return 1, available - cost, 0, 0, su, sr, value, su * L + sr
  end
  local ru, rr = span(cost > limit + carry(used))
  local su, sr = fresh(used, carried)
  return 0, available, ru, rr, su, sr
end

--@ int_text
-- An integer below 2^53 as Redis reads it (a score or a member), without an exponent.
local function int_text(x)
  return string.format('%.0f', x)
end

--@ log_decide
-- Sliding window log at now = q * L + r. KEYS: log (sorted set), meta (hash: b = base Q,
-- s = sequence). Scores are nanoseconds since b * L; an entry at e counts at t while
-- e > t - period. Expired entries are trimmed first (on a denial too: it changes no decision),
-- and a log without its base is dropped. The pending write is w1 = the base and w2 = the score
-- of the new entries (see `log_store`).
local function log_decide(log, meta, q, r, L, limit, period, cost)
  local braw = redis.call('HGET', meta, 'b')
  local base = q
  local count = 0
  if braw then
    base = tonumber(braw)
    if base == nil or base ~= math.floor(base) then return nil, corrupt(meta) end
    local rel = (q - base) * L + r
    redis.call('ZREMRANGEBYSCORE', log, '-inf', int_text(rel - period))
    count = redis.call('ZCARD', log)
    if count == 0 then
      base = q
    elseif (q - base) * L > 2251799813685248 then
      -- Rebase so scores stay far below 2^53 on a key that never goes idle (500 entries a
      -- call). The same entries at the same times: no decision changes.
      local delta = (q - base) * L
      local all = redis.call('ZRANGE', log, 0, -1, 'WITHSCORES')
      local args = {}
      for i = 1, #all, 2 do
        args[#args + 1] = int_text(tonumber(all[i + 1]) - delta)
        args[#args + 1] = all[i]
        if #args == 1000 or i + 1 == #all then
          redis.call('ZADD', log, unpack(args))
          args = {}
        end
      end
      base = q
      redis.call('HSET', meta, 'b', int_text(base))
    end
  elseif redis.call('ZCARD', log) > 0 then
    -- Entries without their base cannot be placed in time: start afresh.
    redis.call('DEL', log)
  end
  local rel = (q - base) * L + r
  local function reset_from(newest)
    local t = newest + period - rel
    if t < 0 then return 0 end
    return t
  end
  -- The newest entry's score (nil for an empty log: count is 0 after trimming, or there was
  -- no base, and the log was dropped if it held anything).
  local newest
  if count > 0 then
    local top = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
    if #top == 2 then newest = tonumber(top[2]) end
  end
  if count + cost <= limit then
    if cost > 0 and (newest == nil or rel > newest) then newest = rel end
    local reset = 0
    if newest then reset = reset_from(newest) end
    if cost > 0 then return 1, limit - count - cost, 0, 0, 0, reset, base, rel end
    return 1, limit - count - cost, 0, 0, 0, reset
  end
  local need = count + cost - limit
  local e = redis.call('ZRANGE', log, need - 1, need - 1, 'WITHSCORES')
  local retry = 0
  if #e == 2 then retry = reset_from(tonumber(e[2])) end
  local reset = 0
  if newest then reset = reset_from(newest) end
  local remaining = limit - count
  if remaining < 0 then remaining = 0 end
  return 0, remaining, 0, retry, 0, reset
end

--@ log_store
-- Adds `cost` entries at score `rel` (members from the meta key's sequence, 500 a call), sets
-- the base, and keeps both keys until the log is fresh again in `ns` (see `store`).
local function log_store(log, meta, cost, base, rel, ns)
  local last = redis.call('HINCRBY', meta, 's', cost)
  local first = last - cost + 1
  local score = int_text(rel)
  local i = first
  while i <= last do
    local args = {}
    local stop = math.min(last, i + 499)
    for m = i, stop do
      args[#args + 1] = score
      args[#args + 1] = int_text(m)
    end
    redis.call('ZADD', log, unpack(args))
    i = stop + 1
  end
  redis.call('HSET', meta, 'b', int_text(base))
  local ms = math.ceil(ns / 1000000)
  if ms < 1 then ms = 1 end
  redis.call('PEXPIRE', log, ms + 1)
  redis.call('PEXPIRE', meta, ms + 1)
end
