-- Redis Cluster, second step of a write: KEYS[1] an index; ARGV[1] session id, ARGV[2] its
-- updated_at in microseconds, ARGV[3] ttl in ms, ARGV[4] "1" when the session is new.
-- ZADD GT: a score only grows, so a late or repeated step never moves a session back.
index_add(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), true, ARGV[4] == '1')
return 1
