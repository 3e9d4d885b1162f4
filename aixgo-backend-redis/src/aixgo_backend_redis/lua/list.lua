-- One page of an index, newest first. KEYS[1]: the index. ARGV[1], ARGV[2]: what goes before
-- and after a session id to name its summary; ARGV[3]: rows wanted; ARGV[4], ARGV[5]: the
-- cursor's score and id ("" for the first page); ARGV[6]: "1" to read the summaries here
-- (standalone), "0" to return ids and scores only (Redis Cluster: summaries live elsewhere).
-- Ids whose summary is gone (expired or half-deleted sessions) are skipped and removed from
-- the index, and the scan goes on, so a page is never short while more sessions exist.
local X, PRE, SUF, NEED, CS, CID = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local INLINE = ARGV[6] == '1'
local rows, found, stale = {}, 0, {}

-- Byte order, as Redis sorts equal scores (Lua's < would follow the server's locale).
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local function consider(member, score)
  if INLINE then
    local v = redis.call('HMGET', PRE .. member .. SUF, 'agent', 'user', 'created', 'updated',
      'count', 'meta')
    if not v[1] then
      stale[#stale + 1] = member
      return
    end
    rows[#rows + 1] = member
    rows[#rows + 1] = score
    for j = 1, 6 do rows[#rows + 1] = v[j] end
  else
    rows[#rows + 1] = member
    rows[#rows + 1] = score
  end
  found = found + 1
end

local top = '+inf'
if CS ~= '' then
  -- Keyset pagination on (score, id): first the rest of the cursor's own score...
  for _, m in ipairs(redis.call('ZRANGE', X, CS, CS, 'BYSCORE', 'REV')) do
    if found < NEED and before(m, CID) then consider(m, CS) end
  end
  top = '(' .. CS
end
-- ...then everything below it, in batches, until the page is full.
local offset, batch = 0, math.max(NEED, 16)
while found < NEED do
  local got = redis.call('ZRANGE', X, top, '-inf', 'BYSCORE', 'REV', 'LIMIT', offset, batch,
    'WITHSCORES')
  if #got == 0 then break end
  for j = 1, #got, 2 do
    if found < NEED then consider(got[j], got[j + 1]) end
  end
  offset = offset + #got / 2
  if #got / 2 < batch then break end
end
for i = 1, #stale, 1000 do
  redis.call('ZREM', X, unpack(stale, i, math.min(i + 999, #stale)))
end
return rows
