--[[
  Token bucket per workload: `burst` requests at once, refilled at `rate` per second.

  KEYS[1] bucket hash           ({prefix}ratelimit:{requester hash}): tokens, updated_at

  ARGV[1] now (ms since epoch)
  ARGV[2] refill rate (tokens per second)
  ARGV[3] bucket size (burst)
  ARGV[4] tokens wanted (absent: 1): the broker asks once for all the requests of a
          workload that arrived while its previous call was in flight

  Returns {code, retry after (ms), granted}:
    10  ALLOWED         `granted` tokens taken (1 .. wanted); when fewer than wanted, the
                        next one is back after the given time
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
local wanted = tonumber(ARGV[4]) or 1
local granted = math.min(wanted, math.floor(tokens))
tokens = tokens - granted
redis.call("HSET", KEYS[1], "tokens", tostring(tokens), "updated_at", tostring(math.max(now, updatedAt)))
redis.call("PEXPIRE", KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
local retry = 0
if granted < wanted then
  retry = math.ceil((1 - tokens) * 1000 / rate)
end
return {10, retry, granted}
