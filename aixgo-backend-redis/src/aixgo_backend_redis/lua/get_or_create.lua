-- Standalone only (Redis Cluster: pair.lua around create.lua). KEYS[5]: the index of the
-- (agent, user) pair; ARGV[4..10] as create.lua; ARGV[11], ARGV[12]: what goes before and
-- after a session id to name its summary. One script, so no other call for the pair runs
-- between the look and the create.
-- Returns {'found', id, agent, user, created, updated, count, meta} for the pair's most
-- recently updated session, else what create.lua returns for this one.
local X, PRE, SUF = KEYS[5], ARGV[11], ARGV[12]
while true do
  local top = redis.call('ZRANGE', X, 0, 15, 'REV')
  if #top == 0 then break end
  local stale = {}
  for _, id in ipairs(top) do
    local v = redis.call('HMGET', PRE .. id .. SUF, 'agent', 'user', 'created', 'updated',
      'count', 'meta')
    if v[1] then
      if #stale > 0 then redis.call('ZREM', X, unpack(stale)) end
      return {'found', id, v[1], v[2], v[3], v[4], v[5], v[6]}
    end
    stale[#stale + 1] = id
  end
  -- Expired or half-deleted sessions (see list.lua): drop their entries and look further.
  redis.call('ZREM', X, unpack(stale))
end
return create_(KEYS, ARGV)
