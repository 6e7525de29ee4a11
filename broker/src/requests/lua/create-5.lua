--[[
  Creates a pending approval request, idempotently, within the workload's limit.

  KEYS[1] request hash          ({prefix}req:{id})
  KEYS[2] idempotency key       ({prefix}idem:{requester hash}:{client_request_id}), or "" when none
  KEYS[3] pending set           ({prefix}pending), scored by expiry (ms)
  KEYS[4] workload pending set  ({prefix}pending:wl:{requester hash}), scored by expiry (ms)
  KEYS[5] outbox hash           ({prefix}outbox)

  ARGV[1] request id
  ARGV[2] request fields, JSON object of string -> string
  ARGV[3] content hash: what a retry must match to count as the same request
  ARGV[4] expires at (ms since epoch)
  ARGV[5] lifetime of the idempotency key (ms)
  ARGV[6] now (ms since epoch)
  ARGV[7] most pending requests one workload may have
  ARGV[8] pub/sub channel announcing changes

  Returns {code, request id, n}:
     1  CREATED              created
     2  EXISTING             a request with this idempotency key and the same content exists (its id)
    -2  IDEMPOTENCY_CONFLICT the idempotency key is taken by a request with different content (its id)
    -3  TOO_MANY_PENDING     the workload already has n pending requests
]]
if KEYS[2] ~= "" then
  local existing = redis.call("GET", KEYS[2])
  if existing then
    local sep = string.find(existing, " ", 1, true)
    local existingId = string.sub(existing, 1, sep - 1)
    local existingHash = string.sub(existing, sep + 1)
    if existingHash == ARGV[3] then
      return {2, existingId, 0}
    end
    return {-2, existingId, 0}
  end
end

-- Requests past their deadline no longer count, even before the sweeper ends them.
redis.call("ZREMRANGEBYSCORE", KEYS[4], "-inf", ARGV[6])
local pendingCount = redis.call("ZCARD", KEYS[4])
if pendingCount >= tonumber(ARGV[7]) then
  return {-3, "", pendingCount}
end

local fields = cjson.decode(ARGV[2])
local args = {}
for k, v in pairs(fields) do
  args[#args + 1] = k
  args[#args + 1] = v
end
redis.call("HSET", KEYS[1], unpack(args))
redis.call("ZADD", KEYS[3], ARGV[4], ARGV[1])
redis.call("ZADD", KEYS[4], ARGV[4], ARGV[1])
redis.call("HSET", KEYS[5], ARGV[1] .. "|created", ARGV[6])
if KEYS[2] ~= "" then
  redis.call("SET", KEYS[2], ARGV[1] .. " " .. ARGV[3], "PX", ARGV[5])
end
redis.call("PUBLISH", ARGV[8], ARGV[1])
return {1, ARGV[1], pendingCount + 1}
