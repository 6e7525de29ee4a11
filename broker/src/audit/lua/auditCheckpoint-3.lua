--[[
  Stores a signed checkpoint over a chain position, once: when several replicas
  checkpoint, the first one wins and later ones for the same or an older
  position are no-ops. Each checkpoint names the one before it (prev_checkpoint),
  so a checkpoint deleted from the list leaves a gap audit verify reports.

  KEYS[1] checkpoints list      ({prefix}audit:checkpoints), one compact JWS per element
  KEYS[2] chain head hash       ({prefix}audit:head), field checkpoint_seq is kept here
  KEYS[3] chain list            ({prefix}audit:chain)

  ARGV[1] seq the checkpoint covers
  ARGV[2] hash of the record at that seq
  ARGV[3] the checkpoint (compact JWS)
  ARGV[4] the checkpoint_seq it names as its predecessor (0: none)

  Returns:
     1  stored
     0  a checkpoint at this seq or later exists already
    -1  the chain has no record with that seq and hash at that position
    -2  another checkpoint was stored since the predecessor was read: sign again
]]
local seq = tonumber(ARGV[1])
local first = tonumber(redis.call("HGET", KEYS[2], "first_seq") or "1")
local record = redis.call("LINDEX", KEYS[3], seq - first)
if not record then
  return -1
end
local decoded = cjson.decode(record)
if tonumber(decoded["seq"]) ~= seq or decoded["hash"] ~= ARGV[2] then
  return -1
end
local last = tonumber(redis.call("HGET", KEYS[2], "checkpoint_seq") or "0")
if last >= seq then
  return 0
end
if last ~= tonumber(ARGV[4]) then
  return -2
end
redis.call("RPUSH", KEYS[1], ARGV[3])
redis.call("HSET", KEYS[2], "checkpoint_seq", ARGV[1])
return 1
