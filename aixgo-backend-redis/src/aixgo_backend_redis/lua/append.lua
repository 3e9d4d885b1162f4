-- ARGV[4] expected_seq ("" for none), prefixed with "?" to probe: a batch that holds stored
-- ids then returns {'known', count, (position, seq, json)...} and writes nothing, so the
-- client can compare them with what it sends before anything is stored. Then pairs: message
-- id, message JSON.
-- Returns {'ok', count, updated_us, first_fresh_seq, idx, (position, seq, json)...} where idx
-- is the session's index keys for Redis Cluster's second step ('' when done here) and the
-- triples are the messages that were already in the current history (idempotent repeats),
-- or {'conflict', count}, or {'notfound'}.
-- One HMGET reads the summary and where each message id was stored ("#<id>" fields), and one
-- HSET writes them back: calls into Redis dominate a script's cost.
local n = (#ARGV - 4) / 2
local h
if n == 1 then
  -- One message: the common call, without the batch's tables (less work on the server).
  local ref = '#' .. ARGV[5]
  h = redis.call('HMGET', S, 'head', 'count', 'updated', 'idx', ref)
  local count = tonumber(h[2])
  if h[1] and not h[5] and (ARGV[4] == '' or tonumber(ARGV[4]) == count) then
    -- Its id was never stored, and any expected_seq holds.
    count = count + 1
    redis.call('RPUSH', M, with_seq(ARGV[6], count))
    local now = int(math.max(now_us(), tonumber(h[3]))) -- formatted once: not cheap
    redis.call('HSET', S, ref, h[1] .. ':' .. tostring(count), 'count', count, 'updated', now)
    if INLINE then touch_indexes(h[4], now, false) end
    renew()
    return {'ok', count, now, count, INLINE and '' or h[4]}
  end
end
local probe = string.byte(ARGV[4]) == 63 -- '?'
local expected = probe and string.sub(ARGV[4], 2) or ARGV[4]
local fields = {'head', 'count', 'updated', 'idx'}
for k = 1, n do fields[4 + k] = '#' .. ARGV[3 + 2 * k] end
h = h or hmget(S, fields) -- one message that is a repeat, a conflict or not found: read once
if not h[1] then return {'notfound'} end
local head, count, updated, idx = tonumber(h[1]), tonumber(h[2]), tonumber(h[3]), h[4]
local refs = {}
for k = 1, n do refs[k] = h[4 + k] end
local known, out, fresh = {}, {}, n
for k = 1, n do
  -- Every place the id was stored, "b:s b:s ...": a restore may discard a message, it may be
  -- stored again on the new branch, and an undo may make the first copy current again. Only
  -- a copy in the current history counts (Lineage.is_live), like in the reference backend.
  if refs[k] then
    for ref in string.gmatch(refs[k], '%S+') do
      local b, s = string.match(ref, '^(%d+):(%d+)$')
      b, s = tonumber(b), tonumber(s)
      if not known[k] and s <= count and owner(head, s) == b then
        known[k] = true
        fresh = fresh - 1
        out[#out + 1] = k
        out[#out + 1] = s
        out[#out + 1] = redis.call('LINDEX', M, position(b, s))
      end
    end
  end
end
if probe and #out > 0 then
  local reply = {'known', count}
  for j = 1, #out do reply[#reply + 1] = out[j] end
  return reply
end
if fresh > 0 and expected ~= '' and tonumber(expected) ~= count then
  return {'conflict', count}
end
local first = count + 1
if fresh > 0 then
  local jsons, writes = {}, {}
  local prefix = h[1] .. ':'
  for k = 1, n do
    if not known[k] then
      count = count + 1
      jsons[#jsons + 1] = with_seq(ARGV[4 + 2 * k], count)
      local ref = prefix .. tostring(count) -- exact below 1e14 messages
      writes[#writes + 1] = fields[4 + k]
      writes[#writes + 1] = refs[k] and (refs[k] .. ' ' .. ref) or ref
    end
  end
  for i = 1, #jsons, CHUNK do
    redis.call('RPUSH', M, unpack(jsons, i, math.min(i + CHUNK - 1, #jsons)))
  end
  updated = math.max(now_us(), updated)
  writes[#writes + 1] = 'count'
  writes[#writes + 1] = count
  writes[#writes + 1] = 'updated'
  writes[#writes + 1] = int(updated)
  hset(S, writes)
  if INLINE then touch_indexes(idx, int(updated), false) end
end
renew()
local reply = {'ok', count, int(updated), first, INLINE and '' or idx}
for j = 1, #out do reply[#reply + 1] = out[j] end
return reply
