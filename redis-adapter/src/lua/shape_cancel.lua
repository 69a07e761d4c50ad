-- ARGV: ticket. Removes it (the TAT never moved for it, so nothing is given back but its
-- place). Replies {1} if it was queued, {0} if it was already gone.
local id = ARGV[1]
local was = drop(id)
purge()
keep()
if was then return {1} end
return {0}
