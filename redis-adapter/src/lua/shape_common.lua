-- Shaping queue (one per user key, all keys in one hash slot). Constants: T (interval, ns),
-- tol (burst * T), burst, max_queue (-1: none), max_wait (ns), poll (ns), grace (ns).
-- KEYS: tat (GCRA TAT of departures, two packed doubles: seconds, ns), q (ZSET of tickets by
-- sequence), l (ZSET of the same tickets by lease deadline, us), m (HASH: seq, units).
-- A ticket is the string "<seq>:<cost>". Time is Redis TIME; nothing here trusts the caller's.
local L = 1000000000
local T, tol, burst, max_queue, max_wait, poll, grace = {{PARAMS}}
local K_TAT, K_Q, K_L, K_M = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
-- ARGV never holds a time (index 9 is past every script's arguments): read Redis TIME.
local q, r = now_qr(L, 9)
local now_us = q * 1000000 + r / 1000

local function ticket_cost(id)
  return tonumber(string.match(id, ':(%d+)$')) or 0
end

-- Drops a ticket and its units (no-op when absent). Returns whether it was queued.
local function drop(id)
  if redis.call('ZREM', K_Q, id) == 0 then return false end
  redis.call('ZREM', K_L, id)
  redis.call('HINCRBY', K_M, 'units', -ticket_cost(id))
  return true
end

-- Tickets whose holder stopped polling (lease passed) leave the queue without departing.
local function purge()
  local dead = redis.call('ZRANGEBYSCORE', K_L, '-inf', '(' .. string.format('%.0f', now_us))
  for _, id in ipairs(dead) do drop(id) end
end

-- Units queued ahead of the ticket at `rank`.
local function units_ahead(rank)
  if rank == 0 then return 0 end
  local sum = 0
  for _, id in ipairs(redis.call('ZRANGE', K_Q, 0, rank - 1)) do sum = sum + ticket_cost(id) end
  return sum
end

-- Nanoseconds from now until a request of `cost` with `ahead` units before it leaves, when
-- the TAT is `b` ahead of now and everyone ahead leaves on time.
local function estimate(ahead, cost, b)
  local at = b + ahead * T - (burst - cost) * T
  if at < 0 then return 0 end
  return at
end

-- Leaves now: moves the TAT (b ahead of now) by the cost.
local function leave(cost, b)
  if cost > 0 then
    local n = b + cost * T
    local tq, tr = divmod(1, r, n, L)
    store(K_TAT, struct.pack('<dd', q + tq, tr), n)
  end
end

-- The lease of a waiter told to wait `wait` ns: it polls again within min(wait, poll), or
-- within poll when told 0 (someone ahead is late), plus the grace.
local function lease(wait)
  local w = wait
  if w > poll or w == 0 then w = poll end
  return now_us + math.ceil((w + grace) / 1000)
end

-- Idle queues vanish: an empty queue's keys are deleted, a busy one's live until its last
-- lease (the TAT key carries its own TTL, set when it moves).
local function keep()
  if redis.call('ZCARD', K_Q) == 0 then
    redis.call('DEL', K_Q, K_L, K_M)
    return
  end
  local last = redis.call('ZRANGE', K_L, -1, -1, 'WITHSCORES')
  local ms = 1
  if last[2] then
    ms = math.ceil((tonumber(last[2]) - now_us) / 1000) + 1
    if ms < 1 then ms = 1 end
  end
  redis.call('PEXPIRE', K_Q, ms)
  redis.call('PEXPIRE', K_L, ms)
  redis.call('PEXPIRE', K_M, ms)
end
