-- Shared by every per-session script (prepended by scripts.py).
-- KEYS[1..5]: summary, branches, messages, ids, checkpoints of one session (one hash tag).
-- ARGV[1]: session id; ARGV[2]: ttl in ms ("0": none); ARGV[3]: "1" to update the listing
-- indexes here too (standalone Redis), "0" to leave that to the caller (Redis Cluster).
local S, B, M, I, C = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local SID, TTL, INLINE = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local CHUNK = 1000 -- unpack() has a stack limit; large batches go in chunks

local function int(x) return string.format('%.0f', x) end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- The branch table, read lazily and cached: b -> {parent or nil, fork_seq}.
local branches = {}
local function branch(b)
  local br = branches[b]
  if br == nil then
    local raw = redis.call('HGET', B, int(b))
    if not raw then
      return error({err = 'AIXGO_CORRUPT branch ' .. int(b) .. ' is missing from ' .. B})
    end
    local p, f = string.match(raw, '^(-?%d+),(%d+)$')
    p = tonumber(p)
    if p < 0 then p = nil end
    br = {p, tonumber(f)}
    branches[b] = br
  end
  return br
end

-- The branch that stores message `seq` of branch `b`'s history (Lineage.owner).
local function owner(b, seq)
  if seq <= 0 then return nil end
  while b ~= nil do
    local br = branch(b)
    if seq > br[2] then return b end
    b = br[1]
  end
  return nil
end

-- "branch:seq" fields of messages lo..hi of branch b's history, oldest first (Lineage.spans).
local function fields(b, lo, hi)
  local runs = {}
  while hi >= lo and b ~= nil do
    local br = branch(b)
    local start = math.max(br[2] + 1, lo)
    if start <= hi then runs[#runs + 1] = {b, start, hi} end
    hi = start - 1
    b = br[1]
  end
  local out = {}
  for r = #runs, 1, -1 do
    local prefix = tostring(runs[r][1]) .. ':'
    -- tostring, not int(): seqs stay far below 1e14, where it prints them exactly, and
    -- string.format is slow in a tight loop.
    for s = runs[r][2], runs[r][3] do out[#out + 1] = prefix .. tostring(s) end
  end
  return out
end

local function hmget(key, names)
  local out = {}
  for i = 1, #names, CHUNK do
    local got = redis.call('HMGET', key, unpack(names, i, math.min(i + CHUNK - 1, #names)))
    for j = 1, #got do out[#out + 1] = got[j] end
  end
  return out
end

local function hset(key, pairs_)
  for i = 1, #pairs_, CHUNK do
    redis.call('HSET', key, unpack(pairs_, i, math.min(i + CHUNK - 1, #pairs_)))
  end
end

local function split_lines(text)
  local out = {}
  if text then for line in string.gmatch(text, '[^\n]+') do out[#out + 1] = line end end
  return out
end

-- Sliding expiry: all five keys get the same deadline on every write.
local function renew()
  if TTL > 0 then
    for k = 1, 5 do redis.call('PEXPIRE', KEYS[k], TTL) end
  end
end

-- Standalone only: move this session to `score` in each of its indexes. The index keys are
-- read from the summary (Redis Cluster cannot do this: they live in other slots, and
-- index.lua does the same there as a second step).
local function touch_indexes(idx, score, joining)
  local s = int(score)
  for _, key in ipairs(split_lines(idx)) do index_add(key, SID, s, TTL, false, joining) end
end

local function checkpoint_value(head, seq, now, label_json)
  local n = redis.call('HLEN', C) + 1
  return int(n) .. ',' .. int(head) .. ',' .. int(seq) .. ',' .. int(now) .. ',' .. label_json
end
