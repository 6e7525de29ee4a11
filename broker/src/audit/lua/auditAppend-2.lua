--[[
  Appends records to the audit hash chain, if and only if the chain still ends
  where the caller computed from (compare-and-append), and stores the new head
  with its signature. The broker hashes and signs in Node (Redis Lua has SHA-1
  only, and hashing there would stall every other client); this script makes the
  append atomic and keeps replicas from forking the chain.

  KEYS[1] chain list            ({prefix}audit:chain), one canonical JSON record per element
  KEYS[2] chain head hash       ({prefix}audit:head), fields seq, hash, at, sig,
                                checkpoint_seq (kept by auditCheckpoint), first_seq (absent = 1)

  ARGV[1] expected head seq     (0 for an empty chain)
  ARGV[2] expected head hash    (64 zeros for an empty chain)
  ARGV[3] new head seq
  ARGV[4] new head hash
  ARGV[5] new head at (ms)
  ARGV[6] new head signature    (compact JWS)
  ARGV[7] "1": the chain is empty because Redis lost it; continue the numbering after
          the expected head (the last one the broker knew of) instead of at seq 1
  ARGV[8..] the records, in order (seq ARGV[1]+1 .. ARGV[3])

  Returns:
    {1, new head seq, checkpoint_seq}                             appended
    {0, seq, hash, sig, checkpoint_seq, first_seq, hash_at_expected}
                                                                  the head moved (another replica appended, or the
                                                                  chain was changed): check it, rechain and retry;
                                                                  hash_at_expected is the hash of the record now at
                                                                  seq ARGV[1] ("" when there is none), so the caller
                                                                  sees whether the record it appended after is still there
    {-1, chain length}                                            the head is missing but the chain is not empty: refuse to fork
]]
-- One read of the head's fields (not an HGET each: this runs once per batch of appends).
local found = redis.call("HMGET", KEYS[2], "seq", "hash", "checkpoint_seq")
local seq = found[1]
local hash
if seq then
  hash = found[2]
else
  local length = redis.call("LLEN", KEYS[1])
  if length > 0 then
    return {-1, length}
  end
  if ARGV[7] == "1" then
    redis.call("RPUSH", KEYS[1], unpack(ARGV, 8))
    redis.call("DEL", KEYS[2])
    redis.call("HSET", KEYS[2], "seq", ARGV[3], "hash", ARGV[4], "at", ARGV[5], "sig", ARGV[6], "first_seq", tonumber(ARGV[1]) + 1)
    return {1, tonumber(ARGV[3]), 0}
  end
  seq = "0"
  hash = string.rep("0", 64)
end
local checkpoint = tonumber(found[3] or "0")
if seq ~= ARGV[1] or hash ~= ARGV[2] then
  local first = tonumber(redis.call("HGET", KEYS[2], "first_seq") or "1")
  local expected = tonumber(ARGV[1])
  local at_expected = ""
  if expected >= first then
    local record = redis.call("LINDEX", KEYS[1], expected - first)
    if record then
      at_expected = cjson.decode(record)["hash"] or ""
    end
  end
  return {0, tonumber(seq), hash, redis.call("HGET", KEYS[2], "sig") or "", checkpoint, first, at_expected}
end
redis.call("RPUSH", KEYS[1], unpack(ARGV, 8))
redis.call("HSET", KEYS[2], "seq", ARGV[3], "hash", ARGV[4], "at", ARGV[5], "sig", ARGV[6])
return {1, tonumber(ARGV[3]), checkpoint}
