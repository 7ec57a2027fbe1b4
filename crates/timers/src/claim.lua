-- Claims due timer entries with a lease, in one step (like BullMQ's promotion): entries whose
-- due time has come move from the due set to the lease set, scored by when the lease ends.
-- Entries whose lease ended (their sweeper died) go back to the due set first, to fire again.
--
-- KEYS[1] due set, KEYS[2] lease set, KEYS[3] the marker saying the index was built
-- ARGV[1] now (ms), ARGV[2] lease (ms), ARGV[3] most entries to claim
-- Returns { marker_present, refired, next_wake_ms (or -1), claimed... }

local now = tonumber(ARGV[1])
local max = tonumber(ARGV[3])
local marker = redis.call('EXISTS', KEYS[3])
if marker == 0 then
  -- Redis lost its data: claim nothing until the index is rebuilt from the database.
  return { 0, 0, -1 }
end

local refired = 0
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, max)
if #expired > 0 then
  local args = {}
  for i, m in ipairs(expired) do
    args[2 * i - 1] = now
    args[2 * i] = m
  end
  redis.call('ZREM', KEYS[2], unpack(expired))
  redis.call('ZADD', KEYS[1], unpack(args))
  refired = #expired
end

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, max)
if #due > 0 then
  local until_ = now + tonumber(ARGV[2])
  local args = {}
  for i, m in ipairs(due) do
    args[2 * i - 1] = until_
    args[2 * i] = m
  end
  redis.call('ZADD', KEYS[2], unpack(args))
  redis.call('ZREM', KEYS[1], unpack(due))
end

-- Wake for whichever comes first: the next due entry or the next lease to end.
local wake = -1
local nd = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nd > 0 then wake = tonumber(nd[2]) end
local nl = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #nl > 0 and (wake < 0 or tonumber(nl[2]) < wake) then wake = tonumber(nl[2]) end

local out = { marker, refired, wake }
for _, m in ipairs(due) do out[#out + 1] = m end
return out
