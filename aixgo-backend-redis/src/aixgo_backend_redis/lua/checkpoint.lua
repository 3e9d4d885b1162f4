-- ARGV[4] checkpoint id, ARGV[5] label as JSON. Returns {'ok'|'exists', stored value}.
local h = redis.call('HMGET', S, 'head', 'count')
if not h[1] then return {'notfound'} end
local old = redis.call('HGET', C, ARGV[4])
if old then return {'exists', old} end
local value = checkpoint_value(tonumber(h[1]), tonumber(h[2]), now_us(), ARGV[5])
redis.call('HSET', C, ARGV[4], value)
renew()
return {'ok', value}
