-- ARGV: ticket. Replies {0, s, ns} (left at Redis time s.ns), {1, wait} (still waiting, about
-- `wait` ns more; lease extended), {4} (the ticket is gone: its lease passed).
local id = ARGV[1]
purge()
local rank = redis.call('ZRANK', K_Q, id)
if not rank then
  keep()
  return {4}
end
local b, err = packed_ahead(K_TAT, q, r, L)
if not b then return err end
local cost = ticket_cost(id)
if rank == 0 and b + cost * T <= tol then
  drop(id)
  leave(cost, b)
  keep()
  return {0, q, r}
end
local wait = estimate(units_ahead(rank), cost, b)
redis.call('ZADD', K_L, 'XX', lease(wait), id)
keep()
return {1, wait}
