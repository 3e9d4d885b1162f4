-- Shared by every per-session script (see scripts.py: once at the top of the function
-- library, or before each script sent with EVAL). Each call starts with bind(KEYS, ARGV):
-- KEYS[1..4]: summary (which also maps "#<message id>" to where the message is stored),
-- branches, messages (a list), checkpoints of one session (one hash tag).
-- ARGV[1]: session id; ARGV[2]: ttl in ms ("0": none); ARGV[3]: "1" to update the listing
-- indexes here too (standalone Redis), "0" to leave that to the caller (Redis Cluster).
local S, B, M, C, SID, TTL, INLINE
local branches -- the branch table cache below: one call's, never the next call's
local CHUNK = 1000 -- unpack() has a stack limit; large batches go in chunks

local function bind(keys, argv)
  S, B, M, C = keys[1], keys[2], keys[3], keys[4]
  SID, TTL, INLINE = argv[1], tonumber(argv[2]), argv[3] == '1'
  branches = {}
end

local function int(x) return string.format('%.0f', x) end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- The branch table, read lazily and cached: b -> {parent or nil, fork_seq, start}, where
-- `start` is the index in the message list of the branch's first own message. Only the head
-- branch ever grows, and a restore pushes a marker "#<branch>,<fork_seq>" (never valid
-- message JSON) and starts its branch after it, so each branch's own messages are one
-- contiguous run of the list, the head's run is at its end, and a run of the list's end
-- without a marker is the end of the current history.
local function branch(b)
  local br = branches[b]
  if br == nil then
    local raw = redis.call('HGET', B, tostring(b))
    if not raw then
      return error({err = 'AIXGO_CORRUPT branch ' .. tostring(b) .. ' is missing from ' .. B})
    end
    local p, f, st = string.match(raw, '^(-?%d+),(%d+),(%d+)$')
    p = tonumber(p)
    if p < 0 then p = nil end
    br = {p, tonumber(f), tonumber(st)}
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

-- The message JSON with its seq written in: the client sends every message ending in
-- "seq":null} (pydantic writes seq last), so a tail read needs no bookkeeping besides LRANGE.
local function with_seq(json, seq)
  if string.sub(json, -11) == '"seq":null}' then
    return string.sub(json, 1, -6) .. tostring(seq) .. '}'
  end
  return json
end

-- The list index of message `seq` owned by branch `b`.
local function position(b, seq)
  local br = branch(b)
  return br[3] + seq - br[2] - 1
end

-- Messages lo..hi of branch b's history, oldest first (Lineage.spans): one LRANGE per run of
-- consecutive messages, so the cost follows the messages read, not the history's length.
local function read_messages(b, lo, hi, out)
  local runs = {}
  while hi >= lo and b ~= nil do
    local br = branch(b)
    local start = math.max(br[2] + 1, lo)
    if start <= hi then runs[#runs + 1] = {position(b, start), position(b, hi)} end
    hi = start - 1
    b = br[1]
  end
  for r = #runs, 1, -1 do
    local got = redis.call('LRANGE', M, runs[r][1], runs[r][2])
    if #got ~= runs[r][2] - runs[r][1] + 1 then
      return error({err = 'AIXGO_CORRUPT messages ' .. runs[r][1] .. '..' .. runs[r][2] ..
        ' are missing from ' .. M})
    end
    for j = 1, #got do out[#out + 1] = got[j] end
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

-- Sliding expiry: all four keys get the same deadline on every write.
local function renew()
  if TTL > 0 then
    redis.call('PEXPIRE', S, TTL)
    redis.call('PEXPIRE', B, TTL)
    redis.call('PEXPIRE', M, TTL)
    redis.call('PEXPIRE', C, TTL)
  end
end

-- Standalone only: move this session to `score` (microseconds, as text: see int) in each of
-- its indexes. The index keys are read from the summary (Redis Cluster cannot do this: they
-- live in other slots, and index.lua does the same there as a second step).
local function touch_indexes(idx, score, joining)
  for key in string.gmatch(idx or '', '[^\n]+') do
    index_add(key, SID, score, TTL, false, joining)
  end
end

local function checkpoint_value(head, seq, now, label_json)
  local n = redis.call('HLEN', C) + 1
  return int(n) .. ',' .. int(head) .. ',' .. int(seq) .. ',' .. int(now) .. ',' .. label_json
end
