-- Shared by common.lua and index.lua: put session `sid` at `score` in index `key`.
-- An index lives as long as its longest-lived session. A writer with a TTL gives a new index
-- that TTL and afterwards only ever lengthens it (PEXPIRE GT leaves a permanent index alone).
-- A session without a TTL makes its index permanent when it joins it (PERSIST at create);
-- writers with a TTL never add one to a permanent index, and the index cannot vanish while
-- that session is in it. So backends with different ttl= options on one prefix never expire
-- each other's listings. Entries of expired sessions are skipped and removed by list.lua.
-- `gt`: only ever raise the score (Redis Cluster's second step may arrive late or twice).
-- Appends cost one call per index without a TTL and two with one.
local function index_add(key, sid, score, ttl, gt, joining)
  local added
  if gt then
    added = redis.call('ZADD', key, 'GT', score, sid)
  else
    added = redis.call('ZADD', key, score, sid)
  end
  if ttl <= 0 then
    if joining then redis.call('PERSIST', key) end
  elseif added == 1 then
    -- Newly in the index: it was created just now if we are its only member.
    local left = redis.call('PTTL', key)
    if (left == -1 and redis.call('ZCARD', key) == 1) or (left >= 0 and left < ttl) then
      redis.call('PEXPIRE', key, ttl)
    end
  else
    redis.call('PEXPIRE', key, ttl, 'GT')
  end
end
