-- Sliding window log. KEYS: log (sorted set), meta (hash: b = base Q, s = sequence).
-- Constants: L (unit), limit, period. ARGV: cost [, Q, R]. Scores are nanoseconds since b * L.
-- An entry at e counts at t while e > t - period.
local L, limit, period = {{PARAMS}}
local cost = tonumber(ARGV[1])
if cost > limit then return too_big(limit) end
local function num(s)
  return string.format('%.0f', s)
end
-- The TTL for entries fresh again in `ns` (see `store` in the prelude).
local function ttl_ms(ns)
  local ms = math.ceil(ns / 1000000)
  if ms < 1 then ms = 1 end
  return ms + 1
end
local q, r = now_qr(L)
local log, meta = KEYS[1], KEYS[2]
local braw = redis.call('HGET', meta, 'b')
local base = q
local count = 0
if braw then
  base = tonumber(braw)
  if base == nil or base ~= math.floor(base) then return corrupt(meta) end
  local rel = (q - base) * L + r
  redis.call('ZREMRANGEBYSCORE', log, '-inf', num(rel - period))
  count = redis.call('ZCARD', log)
  if count == 0 then
    base = q
  elseif (q - base) * L > 2251799813685248 then
    -- Rebase so scores stay far below 2^53 on a key that never goes idle (500 entries a call).
    local delta = (q - base) * L
    local all = redis.call('ZRANGE', log, 0, -1, 'WITHSCORES')
    local args = {}
    for i = 1, #all, 2 do
      args[#args + 1] = num(tonumber(all[i + 1]) - delta)
      args[#args + 1] = all[i]
      if #args == 1000 or i + 1 == #all then
        redis.call('ZADD', log, unpack(args))
        args = {}
      end
    end
    base = q
    redis.call('HSET', meta, 'b', num(base))
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
local function newest()
  local top = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
  if #top == 0 then return nil end
  return tonumber(top[2])
end
if count + cost <= limit then
  if cost > 0 then
    local last = redis.call('HINCRBY', meta, 's', cost)
    local first = last - cost + 1
    local score = num(rel)
    local i = first
    while i <= last do
      local args = {}
      local stop = math.min(last, i + 499)
      for m = i, stop do
        args[#args + 1] = score
        args[#args + 1] = num(m)
      end
      redis.call('ZADD', log, unpack(args))
      i = stop + 1
    end
    redis.call('HSET', meta, 'b', num(base))
  end
  local nw = newest()
  local reset = 0
  if nw then reset = reset_from(nw) end
  if cost > 0 then
    local ms = ttl_ms(reset)
    redis.call('PEXPIRE', log, ms)
    redis.call('PEXPIRE', meta, ms)
  end
  return reply(1, limit, limit - count - cost, 0, reset)
end
local need = count + cost - limit
local e = redis.call('ZRANGE', log, need - 1, need - 1, 'WITHSCORES')
local retry = 0
if #e == 2 then retry = reset_from(tonumber(e[2])) end
local nw = newest()
local reset = 0
if nw then reset = reset_from(nw) end
local remaining = limit - count
if remaining < 0 then remaining = 0 end
return reply(0, limit, remaining, retry, reset)
