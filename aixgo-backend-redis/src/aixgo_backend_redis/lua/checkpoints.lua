-- Returns {'ok', id, value, id, value...} for every checkpoint (the caller sorts by ordinal).
if redis.call('EXISTS', S) == 0 then return {'notfound'} end
local reply = {'ok'}
for _, v in ipairs(redis.call('HGETALL', C)) do reply[#reply + 1] = v end
return reply
