"""The relay's Lua scripts: every change a relay makes to a partition in Redis.

Each acts only while the partition's lease holds the caller's value (``<relay id>#<token>``,
see :mod:`moetrack.redis.leases`), so a relay that lost its lease changes nothing. All keys
of one call are under one app id's hash tag (one Redis Cluster slot).
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACK", "ACQUIRE", "DEAD", "FENCED", "FORGET", "READ", "RELEASE", "RENEW"]

#: What a settling script answers when the lease does not hold the caller's token.
FENCED: Final = -1

# Take a free lease with the partition's next token. KEYS: lease, fence counter. ARGV: relay
# id, life (ms). Returns the lease's value, or nil when another relay holds it.
ACQUIRE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local value = ARGV[1] .. '#' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
"""
# Forget consumers that have nothing pending and whose relay has no heartbeat record (it is
# gone), atomically: a consumer that reads meanwhile cannot lose what it read. KEYS: the
# stream, then each consumer's heartbeat key. ARGV: group, then the consumers' names.
FORGET: Final = """
local removed = 0
for i = 2, #KEYS do
  local name = ARGV[i]
  local mine = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, name)
  if #mine == 0 and redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    removed = removed + 1
  end
end
return removed
"""

# Renew the lease if it is still ours.
RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# Give the lease up if it is still ours; with ARGV[3] = '1' leave a handoff note so that the
# next owner claims our pending entries at once.
RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[3] == '1' then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) end
  return 1
end
return 0
"""

# Read partitions whose leases still hold our tokens. KEYS: the leases, then the streams, in
# the same order. ARGV: group, consumer, count, then per partition token and cursor ("0":
# our pending entries; ">": new ones). Returns per partition nil when the lease is not
# ours, else {entries, tip}: the entries ({id, {field, value, ...}}, the fields nil for an
# entry deleted while pending), and when a ">" read found nothing the id of the stream's
# last entry ("0-0" if none; "" otherwise), where a wait for new entries starts.
READ: Final = """
local k = #KEYS / 2
local out = {}
for i = 1, k do
  if redis.call('GET', KEYS[i]) == ARGV[2 + 2 * i] then
    local cursor = ARGV[3 + 2 * i]
    local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],
      'STREAMS', KEYS[k + i], cursor)
    local entries = {}
    if got then entries = got[1][2] end
    local tip = ''
    if cursor == '>' and #entries == 0 then
      local last = redis.call('XREVRANGE', KEYS[k + i], '+', '-', 'COUNT', 1)
      if #last > 0 then tip = last[1][1] else tip = '0-0' end
    end
    out[i] = {entries, tip}
  else
    out[i] = false
  end
end
return out
"""
# Acknowledge and delete delivered entries, atomically, in the partitions whose leases hold
# our tokens. KEYS: the leases, then the streams, in the same order. ARGV: group, then per
# partition its token, the count of its entry ids, and the ids. Returns per partition the
# entries deleted, or -1 when its lease is not ours (nothing done there).
ACK: Final = """
local k = #KEYS / 2
local out = {}
local j = 2
for i = 1, k do
  local m = tonumber(ARGV[j + 1])
  if redis.call('GET', KEYS[i]) == ARGV[j] then
    redis.call('XACK', KEYS[k + i], ARGV[1], unpack(ARGV, j + 2, j + 1 + m))
    out[i] = redis.call('XDEL', KEYS[k + i], unpack(ARGV, j + 2, j + 1 + m))
  else
    out[i] = -1
  end
  j = j + 2 + m
end
return out
"""
# Move entries refused for good to the dead-letter stream with the server's answer, then
# acknowledge and delete them, atomically, while the lease holds our token; an entry no
# longer pending (a repeated call) is not moved twice. KEYS: lease, stream, dead-letter
# stream. ARGV: token, group, partition, status, error type, error, failed at (ms), then per
# entry its id, kind, customer_id, device_id ('' for none), payload. Returns the entries
# moved, or -1.
DEAD: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local moved = 0
for j = 8, #ARGV, 5 do
  local id = ARGV[j]
  if redis.call('XACK', KEYS[2], ARGV[2], id) == 1 then
    local f = {'kind', ARGV[j + 1], 'customer_id', ARGV[j + 2]}
    if ARGV[j + 3] ~= '' then
      f[#f + 1] = 'device_id'
      f[#f + 1] = ARGV[j + 3]
    end
    local rest = {'payload', ARGV[j + 4], 'partition', ARGV[3], 'entry', id, 'status', ARGV[4],
      'error_type', ARGV[5], 'error', ARGV[6], 'failed_at', ARGV[7]}
    for _, v in ipairs(rest) do f[#f + 1] = v end
    redis.call('XADD', KEYS[3], '*', unpack(f))
    moved = moved + 1
  end
  redis.call('XDEL', KEYS[2], id)
end
return moved
"""
