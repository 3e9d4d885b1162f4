-- ARGV[4] agent, ARGV[5] user ("" with ARGV[6] = "0": none), ARGV[7] created_us,
-- ARGV[8] updated_us, ARGV[9] metadata JSON, ARGV[10] index keys joined by "\n".
if redis.call('EXISTS', S) == 1 then
  local v = redis.call('HMGET', S, 'agent', 'user', 'created')
  return {'exists', v[1], v[2], v[3]}
end
redis.call('HSET', S, 'agent', ARGV[4], 'created', ARGV[7], 'updated', ARGV[8], 'count', 0,
  'meta', ARGV[9], 'head', 0, 'hfork', 0, 'nb', 1, 'idx', ARGV[10])
if ARGV[6] == '1' then redis.call('HSET', S, 'user', ARGV[5]) end
redis.call('HSET', B, '0', '-1,0,0')
renew()
if INLINE then touch_indexes(ARGV[10], ARGV[8], true) end
return {'ok'}
