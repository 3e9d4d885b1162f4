-- ARGV[4] how many of the last messages ("" for all). Returns {'ok', first_seq, json...}.
local h = redis.call('HMGET', S, 'head', 'count')
if not h[1] then return {'notfound'} end
local head, count = tonumber(h[1]), tonumber(h[2])
local lo = 1
if ARGV[4] ~= '' then lo = math.max(1, count - tonumber(ARGV[4]) + 1) end
return read_messages(head, lo, count, {'ok', lo})
