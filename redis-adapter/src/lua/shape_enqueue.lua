-- ARGV: cost. Replies {0, s, ns} (left now, at Redis time s.ns), {1, seq, wait} (queued as
-- ticket "seq:cost", leaving in about `wait` ns), {2} (queue full), {3, wait} (wait too long).
local cost = tonumber(ARGV[1])
purge()
local b, err = packed_ahead(K_TAT, q, r, L)
if not b then return err end
local n = redis.call('ZCARD', K_Q)
if n == 0 and b + cost * T <= tol then
  leave(cost, b)
  keep()
  return {0, q, r}
end
if max_queue >= 0 and n >= max_queue then
  keep()
  return {2}
end
local units = tonumber(redis.call('HGET', K_M, 'units') or '0') or 0
local wait = estimate(units, cost, b)
if wait > max_wait then
  keep()
  return {3, wait}
end
-- Sequences only grow (seeded from the clock when the queue was deleted), so a stale
-- ticket can never name a newer request.
local seq = (tonumber(redis.call('HGET', K_M, 'seq') or '0') or 0) + 1
if seq < now_us then seq = now_us end
local id = string.format('%.0f:%.0f', seq, cost)
redis.call('HSET', K_M, 'seq', string.format('%.0f', seq))
redis.call('HINCRBY', K_M, 'units', cost)
redis.call('ZADD', K_Q, seq, id)
redis.call('ZADD', K_L, lease(wait), id)
keep()
return {1, seq, wait}
