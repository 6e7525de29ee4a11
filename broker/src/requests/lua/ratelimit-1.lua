--[[
  Token bucket per workload: `burst` requests at once, refilled at `rate` per second.

  KEYS[1] bucket hash           ({prefix}ratelimit:{requester hash}): tokens, updated_at

  ARGV[1] now (ms since epoch)
  ARGV[2] refill rate (tokens per second)
  ARGV[3] bucket size (burst)

  Returns {code, retry after (ms)}:
    10  ALLOWED         one token taken
   -11  RATE_LIMITED    no token left; one is back after the given time
]]
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local bucket = redis.call("HMGET", KEYS[1], "tokens", "updated_at")
local tokens = tonumber(bucket[1]) or burst
local updatedAt = tonumber(bucket[2]) or now
if now > updatedAt then
  tokens = math.min(burst, tokens + (now - updatedAt) * rate / 1000)
end
if tokens < 1 then
  return {-11, math.ceil((1 - tokens) * 1000 / rate)}
end
redis.call("HSET", KEYS[1], "tokens", tostring(tokens - 1), "updated_at", tostring(math.max(now, updatedAt)))
redis.call("PEXPIRE", KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {10, 0}
