-- The session's turn lease. ARGV[4] 'acquire' | 'renew' | 'release', ARGV[5] owner, ARGV[6]
-- ttl in ms (acquire, renew). It lives in the summary hash, so it shares the session's slot,
-- lifetime and TTL, and goes with it on delete: 'lease_owner', 'lease_token', 'lease_until'
-- (microseconds by this server's clock: every client agrees on expiry whatever its own
-- clock says) and 'fence', the last token given out. The counter outlives each lease, so a
-- session's tokens only ever grow.
-- Returns {'ok', token} | {'held'} (acquire), {'ok'} | {'lost'} (renew, release), {'notfound'}.
local h = redis.call('HMGET', S, 'head', 'lease_owner', 'lease_token', 'lease_until')
if not h[1] then return {'notfound'} end
local op, who = ARGV[4], ARGV[5]
local now = now_us()
local held = h[2] and tonumber(h[4]) > now
local mine = held and h[2] == who
if op == 'release' then
  if mine then redis.call('HDEL', S, 'lease_owner', 'lease_token', 'lease_until') end
  return {'ok'}
end
local deadline = int(now + tonumber(ARGV[6]) * 1000)
if op == 'renew' then
  if not mine then return {'lost'} end
  redis.call('HSET', S, 'lease_until', deadline)
  return {'ok'}
end
if held and not mine then return {'held'} end
local token = h[3]
if not mine then token = redis.call('HINCRBY', S, 'fence', 1) end
redis.call('HSET', S, 'lease_owner', who, 'lease_token', token, 'lease_until', deadline)
return {'ok', token}
