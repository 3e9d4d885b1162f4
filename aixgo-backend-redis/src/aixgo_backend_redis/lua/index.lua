-- Redis Cluster, second step of a write: KEYS[1] an index; ARGV[1] session id, ARGV[2] its
-- updated_at in microseconds, ARGV[3] ttl in ms. ZADD GT: a score only grows, so a late or
-- repeated step never moves a session back.
local existed = redis.call('EXISTS', KEYS[1]) == 1
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  local left = redis.call('PTTL', KEYS[1])
  if not existed or (left >= 0 and left < ttl) then redis.call('PEXPIRE', KEYS[1], ttl) end
elseif existed then
  redis.call('PERSIST', KEYS[1])
end
return 1
