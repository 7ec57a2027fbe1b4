-- Gives back what allowed calls took from their limits, for a batch of calls: each limit's
-- theoretical arrival time (TAT, in microseconds) moves back by what the call took, no further
-- than now. A bucket that is
-- full again loses its key, as it would have expired. Calls decided since are untouched: GCRA
-- adds each call's cost to the TAT, so taking one back is exact whatever came in between.
--
-- KEYS: the state keys of the limits the calls consumed, call after call (a key may come again).
-- ARGV[i]: the microseconds to give back to KEYS[i] (the limit's emission interval times the
--   call's cost).
--
-- Returns the number of limits given back to.

local KEYS, ARGV = KEYS, ARGV
local tonumber = tonumber
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local given = 0

for i = 1, #KEYS do
  local stored = redis.call('GET', KEYS[i])
  if stored then
    given = given + 1
    local tat = tonumber(stored) - tonumber(ARGV[i])
    if tat > now then
      redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return given
