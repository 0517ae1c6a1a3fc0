-- Replace reserved units by used ones: add `delta` (used − reserved) to every cell, and report
-- the budget alert thresholds this crossed, each once per window across every instance.
-- ARGV[1]: number of thresholds m, ARGV[2..m+1]: thresholds (percent). Then five values per cell:
--   kind ('r' | 'q'), delta, amount, x (period in µs | window end in unix s), alert ('1' | '0')
-- Returns {index, threshold index, used, …} for every crossing.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local m = tonumber(ARGV[1])
local thresholds = {}
for j = 1, m do thresholds[j] = tonumber(ARGV[1 + j]) end
local base = 1 + m
local out = {}
for i = 1, #KEYS do
  local a = base + (i - 1) * 5
  local kind = ARGV[a + 1]
  local delta = tonumber(ARGV[a + 2])
  local amount = tonumber(ARGV[a + 3])
  local x = tonumber(ARGV[a + 4])
  local alert = ARGV[a + 5] == '1'
  if kind == 'r' then
    if delta ~= 0 and amount > 0 then
      local inc = x / amount
      local cur = redis.call('GET', KEYS[i])
      local tat = nil
      if cur then
        tat = tonumber(cur) + delta * inc
      elseif delta > 0 then
        tat = now + delta * inc
      end
      if tat and tat > now then
        redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
      elseif cur then
        redis.call('DEL', KEYS[i])
      end
    end
  else
    local used
    if delta > 0 or (delta < 0 and redis.call('EXISTS', KEYS[i]) == 1) then
      used = redis.call('HINCRBY', KEYS[i], 'u', delta)
      if used < 0 then
        redis.call('HSET', KEYS[i], 'u', 0)
        used = 0
      end
      redis.call('EXPIREAT', KEYS[i], x + 3600)
    else
      used = tonumber(redis.call('HGET', KEYS[i], 'u') or '0')
    end
    if alert and amount > 0 then
      local alerted = tonumber(redis.call('HGET', KEYS[i], 'a') or '0')
      local bits = alerted
      for j = 1, m do
        local bit = 2 ^ (j - 1)
        if used * 100 >= amount * thresholds[j] and math.floor(alerted / bit) % 2 == 0 then
          bits = bits + bit
          table.insert(out, i)
          table.insert(out, j)
          table.insert(out, used)
        end
      end
      if bits ~= alerted then redis.call('HSET', KEYS[i], 'a', bits) end
    end
  end
end
return out
