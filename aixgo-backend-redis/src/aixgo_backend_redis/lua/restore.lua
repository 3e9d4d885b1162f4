-- ARGV[4] checkpoint id, ARGV[5] undo checkpoint id.
-- Returns {'ok'|'exists', undo value, updated_us, idx} | {'nocheckpoint'} | {'notfound'};
-- 'exists': the undo checkpoint is taken, so this restore already happened (or the id clashes).
if redis.call('EXISTS', S) == 0 then return {'notfound'} end
local target = redis.call('HGET', C, ARGV[4])
if not target then return {'nocheckpoint'} end
local h = redis.call('HMGET', S, 'head', 'count', 'nb', 'updated', 'idx')
local head, count, nb, updated, idx =
  tonumber(h[1]), tonumber(h[2]), tonumber(h[3]), tonumber(h[4]), h[5]
local old = redis.call('HGET', C, ARGV[5])
if old then return {'exists', old, int(updated), idx} end
local now = now_us()
local undo = checkpoint_value(head, count, now, '"before-restore"')
redis.call('HSET', C, ARGV[5], undo)
-- Lineage.move_head: a new branch inherits the checkpoint's history; nothing is rewritten.
local tb, ts = string.match(target, '^%d+,(%d+),(%d+),')
tb, ts = tonumber(tb), tonumber(ts)
local parent = owner(tb, ts) or -1
-- The new branch's own messages start after its marker, at the list's end.
local start = redis.call('RPUSH', M, '#' .. tostring(nb) .. ',' .. tostring(ts))
redis.call('HSET', B, tostring(nb), tostring(parent) .. ',' .. tostring(ts) .. ',' .. start)
updated = math.max(now, updated)
local stamp = int(updated)
redis.call('HSET', S, 'head', nb, 'hfork', ts, 'nb', nb + 1, 'count', ts, 'updated', stamp)
if INLINE then touch_indexes(idx, stamp, false) end
renew()
return {'ok', undo, stamp, idx}
