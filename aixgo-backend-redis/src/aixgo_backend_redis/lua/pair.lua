-- Redis Cluster's get-or-create, around create.lua (which runs in the session's slot, while
-- the pair's index lives in another). KEYS[1]: the (agent, user) index; KEYS[2]: its claim
-- marker (same hash tag), the id of the one session being created for the pair right now.
-- ARGV[1] 'claim' | 'settle', ARGV[2] the new session's id.
--
-- 'claim', ARGV[3] its updated_us, ARGV[4] ttl in ms, ARGV[5] how long the claim holds in
-- ms, ARGV[6..] ids the caller found without a summary: their entries go, unless one is
-- the claim in flight. If the index is then empty, the new id takes the pair: it enters the
-- index and the marker, and the caller creates it. Returns {'claimed'} or
-- {'members', claimed id or '', up to 16 ids, newest first}.
-- 'settle' after the create: {'ok'} if the id is still in the index, else {'lost'} (its
-- claim ran out and another took the pair; the caller deletes what it created).
local X, P, SID = KEYS[1], KEYS[2], ARGV[2]
if ARGV[1] == 'settle' then
  if not redis.call('ZSCORE', X, SID) then return {'lost'} end
  if redis.call('GET', P) == SID then redis.call('DEL', P) end
  return {'ok'}
end
if redis.call('ZSCORE', X, SID) then return {'claimed'} end -- our own earlier attempt
local claimed = redis.call('GET', P)
for i = 6, #ARGV do
  if ARGV[i] ~= claimed then redis.call('ZREM', X, ARGV[i]) end
end
local top = redis.call('ZRANGE', X, 0, 15, 'REV')
if #top == 0 then
  index_add(X, SID, ARGV[3], tonumber(ARGV[4]), true, true)
  redis.call('SET', P, SID, 'PX', ARGV[5])
  return {'claimed'}
end
local reply = {'members', claimed or ''}
for _, id in ipairs(top) do reply[#reply + 1] = id end
return reply
