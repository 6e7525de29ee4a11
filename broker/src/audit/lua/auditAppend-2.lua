--[[
  Appends records to the audit hash chain, if and only if the chain still ends
  where the caller computed from (compare-and-append). The broker hashes in Node
  (Redis Lua has SHA-1 only, and hashing there would stall every other client);
  this script makes the append atomic and keeps replicas from forking the chain.

  KEYS[1] chain list            ({prefix}audit:chain), one canonical JSON record per element
  KEYS[2] chain head hash       ({prefix}audit:head), fields seq, hash, at

  ARGV[1] expected head seq     (0 for an empty chain)
  ARGV[2] expected head hash    (64 zeros for an empty chain)
  ARGV[3] new head seq
  ARGV[4] new head hash
  ARGV[5] new head at (ms)
  ARGV[6..] the records, in order (seq ARGV[1]+1 .. ARGV[3])

  Returns:
    {1, new head seq}                   appended
    {0, current seq, current hash}      the head moved (another replica appended): rechain and retry
    {-1, chain length}                  the head is missing but the chain is not empty: refuse to fork
]]
local seq = redis.call("HGET", KEYS[2], "seq")
local hash
if seq then
  hash = redis.call("HGET", KEYS[2], "hash")
else
  local length = redis.call("LLEN", KEYS[1])
  if length > 0 then
    return {-1, length}
  end
  seq = "0"
  hash = string.rep("0", 64)
end
if seq ~= ARGV[1] or hash ~= ARGV[2] then
  return {0, tonumber(seq), hash}
end
redis.call("RPUSH", KEYS[1], unpack(ARGV, 6))
redis.call("HSET", KEYS[2], "seq", ARGV[3], "hash", ARGV[4], "at", ARGV[5])
return {1, tonumber(ARGV[3])}
