-- Reserve units against several limits at once, all or nothing.
-- KEYS: one cell per limit. ARGV[1]: deadline (µs, Redis clock; 0 = none): past it the caller
-- has given up, so nothing is taken. Then six values per cell:
--   kind ('r' rate | 'q' quota), units, amount, burst, x, soft ('1' | '0')
-- where x is the rate's period in µs, or the quota window's end in unix seconds.
-- Returns {-1} (too late), {1, remaining, reset_ms, …} (taken), or
-- {0, index, retry_s (-1: never), remaining, reset_ms, …} (refused by cell `index`).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local deadline = tonumber(ARGV[1])
if deadline > 0 and now > deadline then
  return {-1}
end
local next_value = {}
local standings = {}
for i = 1, #KEYS do
  local a = 1 + (i - 1) * 6
  local kind = ARGV[a + 1]
  local n = tonumber(ARGV[a + 2])
  local amount = tonumber(ARGV[a + 3])
  local burst = tonumber(ARGV[a + 4])
  local x = tonumber(ARGV[a + 5])
  local soft = ARGV[a + 6] == '1'
  if kind == 'r' then
    if amount <= 0 then
      local out = {0, i, -1}
      for _, v in ipairs(standings) do table.insert(out, v) end
      table.insert(out, 0)
      table.insert(out, 0)
      return out
    end
    local inc = x / amount
    local tau = inc * burst
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    local base = math.max(tat, now)
    local backlog = base - now
    local after = backlog + n * inc
    if after > tau then
      local retry = -1
      if n * inc <= tau then retry = math.ceil((after - tau) / 1000000) end
      local out = {0, i, retry}
      for _, v in ipairs(standings) do table.insert(out, v) end
      table.insert(out, math.floor(math.max(tau - backlog, 0) / inc))
      table.insert(out, math.ceil(backlog / 1000))
      return out
    end
    next_value[i] = base + n * inc
    table.insert(standings, math.floor(math.max(tau - after, 0) / inc))
    table.insert(standings, math.ceil(after / 1000))
  else
    local used = tonumber(redis.call('HGET', KEYS[i], 'u') or '0')
    local reset_ms = math.max(x * 1000 - math.floor(now / 1000), 0)
    if (not soft) and used + n > amount then
      local retry = -1
      if n <= amount then retry = math.max(math.ceil(reset_ms / 1000), 1) end
      local out = {0, i, retry}
      for _, v in ipairs(standings) do table.insert(out, v) end
      table.insert(out, math.max(amount - used, 0))
      table.insert(out, reset_ms)
      return out
    end
    next_value[i] = n
    table.insert(standings, math.max(amount - used - n, 0))
    table.insert(standings, reset_ms)
  end
end
for i = 1, #KEYS do
  local a = 1 + (i - 1) * 6
  if ARGV[a + 1] == 'r' then
    local tat = next_value[i]
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  elseif next_value[i] > 0 then
    redis.call('HINCRBY', KEYS[i], 'u', next_value[i])
    redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[a + 5]) + 3600)
  end
end
local out = {1}
for _, v in ipairs(standings) do table.insert(out, v) end
return out
