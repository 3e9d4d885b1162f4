-- Removes every key of the session and (standalone) its index entries. Returns {'ok', idx}.
local idx = redis.call('HGET', S, 'idx')
if not idx then return {'notfound'} end
if INLINE then
  for _, key in ipairs(split_lines(idx)) do redis.call('ZREM', key, SID) end
end
-- UNLINK frees a long history in the background instead of blocking the server.
redis.call('UNLINK', S, B, M, C)
return {'ok', idx}
