-- GCRA (generic cell rate algorithm) over several limits at once, all or nothing, on Redis's
-- own clock, for a batch of decisions taken in order. Each limit's state is one key holding its
-- theoretical arrival time (TAT, in microseconds); the key expires when the bucket would be full
-- again. Decisions later in a batch see the effect of earlier ones, exactly as if each had been
-- its own call; each distinct key is read once and written once per call.
--
-- KEYS: the state keys of every decision's limits, decision after decision.
-- ARGV[1]: the number of decisions. Then, per decision: its cost, its number of limits n, and
--   per limit: emission interval (microseconds per request), capacity (burst), shadow ('1'/'0').
--
-- Returns, per decision: allowed, tightest, now_us, then per limit:
--   exceeded, remaining, retry_after_us, reset_after_us.
-- A denied decision changes nothing. A shadow limit that would deny is reported as exceeded but
-- neither denies nor consumes.

local KEYS, ARGV = KEYS, ARGV
local floor, tonumber = math.floor, tonumber
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- Every distinct key, read in one MGET.
local tat, distinct, seen = {}, {}, {}
for i = 1, #KEYS do
  local key = KEYS[i]
  if not seen[key] then
    seen[key] = true
    distinct[#distinct + 1] = key
  end
end
local stored = redis.call('MGET', unpack(distinct))
for i = 1, #distinct do
  local v = stored[i] and tonumber(stored[i]) or now
  tat[distinct[i]] = v < now and now or v
end

local dirty = {}
local out = {}
local o = 0
local a = 2
local k = 0
-- Scratch space for one decision, reused.
local interval, horizon, shadow, exceeded, remaining, retry, reset, nt = {}, {}, {}, {}, {}, {}, {}, {}

for _ = 1, tonumber(ARGV[1]) do
  local cost = tonumber(ARGV[a])
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  local denied = false
  for i = 1, n do
    local iv = tonumber(ARGV[a])
    local hz = iv * tonumber(ARGV[a + 1])
    local sh = ARGV[a + 2] == '1'
    a = a + 3
    local current = tat[KEYS[k + i]]
    local next_tat = current + iv * cost
    local used = next_tat - now
    interval[i], horizon[i], shadow[i] = iv, hz, sh
    if used > hz then
      exceeded[i], remaining[i], retry[i], reset[i], nt[i] = 1, 0, used - hz, current - now, false
      if not sh then denied = true end
    else
      exceeded[i], remaining[i], retry[i], reset[i], nt[i] = 0, floor((hz - used) / iv), 0, used, next_tat
    end
  end

  -- The tightest limit: if denied, the one that frees up last; if allowed, the one with the
  -- fewest requests left. Shadow limits are the tightest only if every limit is shadow.
  local best = 1
  for i = 2, n do
    if shadow[best] and not shadow[i] then
      best = i
    elseif shadow[i] == shadow[best] then
      if denied then
        if exceeded[i] == 1 and (exceeded[best] == 0 or retry[i] > retry[best]) then best = i end
      elseif remaining[i] < remaining[best] then
        best = i
      end
    end
  end

  if not denied then
    for i = 1, n do
      if nt[i] then
        local key = KEYS[k + i]
        tat[key] = nt[i]
        dirty[key] = true
      end
    end
  end

  out[o + 1], out[o + 2], out[o + 3] = denied and 0 or 1, best, now
  o = o + 3
  for i = 1, n do
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = exceeded[i], remaining[i], floor(retry[i]), floor(reset[i])
    o = o + 4
  end
  k = k + n
end

for key in pairs(dirty) do
  local v = tat[key]
  redis.call('SET', key, string.format('%.0f', v), 'PX', math.ceil((v - now) / 1000) + 1)
end
return out
