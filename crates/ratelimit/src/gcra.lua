-- GCRA (generic cell rate algorithm) over several limits at once, all or nothing, on Redis's
-- own clock. Each limit's state is one key holding its theoretical arrival time (TAT, in
-- microseconds); the key expires when the bucket would be full again.
--
-- KEYS[i]  state key of limit i
-- ARGV[1]  cost of this call (requests)
-- ARGV[2 + 3(i-1)]  emission interval of limit i, microseconds per request
-- ARGV[3 + 3(i-1)]  capacity (burst) of limit i, requests
-- ARGV[4 + 3(i-1)]  '1' if limit i is in shadow mode (counted, never denies)
--
-- Returns { allowed, tightest, now_us, then per limit: denied, remaining, retry_after_us, reset_after_us }.
-- A denied call changes nothing. A shadow limit that would deny is reported as denied but
-- neither denies nor consumes.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local n = #KEYS
local results = {}
local new_tat = {}
local denied_any = false

for i = 1, n do
  local interval = tonumber(ARGV[2 + (i - 1) * 3])
  local capacity = tonumber(ARGV[3 + (i - 1) * 3])
  local shadow = ARGV[4 + (i - 1) * 3] == '1'
  local stored = redis.call('GET', KEYS[i])
  local tat = stored and tonumber(stored) or now
  if tat < now then tat = now end
  local next_tat = tat + interval * cost
  local horizon = interval * capacity
  local used = next_tat - now
  if used > horizon then
    results[i] = { 1, 0, used - horizon, tat - now, shadow }
    if not shadow then denied_any = true end
  else
    results[i] = { 0, math.floor((horizon - used) / interval), 0, used, shadow }
    new_tat[i] = next_tat
  end
end

-- The tightest limit: if denied, the one that frees up last; if allowed, the one with the
-- fewest requests left. Shadow limits are never the tightest unless all limits are shadow.
local tightest = 1
for i = 1, n do
  local r, best = results[i], results[tightest]
  if best[5] and not r[5] then
    tightest = i
  elseif r[5] == best[5] then
    if denied_any then
      if r[1] == 1 and (best[1] == 0 or r[3] > best[3]) then tightest = i end
    elseif r[2] < best[2] then
      tightest = i
    end
  end
end

if not denied_any then
  for i = 1, n do
    if new_tat[i] then
      local ttl_ms = math.ceil((new_tat[i] - now) / 1000) + 1
      redis.call('SET', KEYS[i], string.format('%.0f', new_tat[i]), 'PX', ttl_ms)
    end
  end
end

local out = { denied_any and 0 or 1, tightest, now }
for i = 1, n do
  local r = results[i]
  table.insert(out, r[1])
  table.insert(out, r[2])
  table.insert(out, math.floor(r[3]))
  table.insert(out, math.floor(r[4]))
end
return out
