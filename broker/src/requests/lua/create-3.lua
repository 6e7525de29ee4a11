--[[
  Creates a pending approval request, idempotently.

  KEYS[1] request hash          ({prefix}req:{id})
  KEYS[2] idempotency key       ({prefix}idem:{requester hash}:{client_request_id}), or "" when none
  KEYS[3] pending set           ({prefix}pending), scored by expiry (ms)

  ARGV[1] request id
  ARGV[2] request fields, JSON object of string -> string
  ARGV[3] content hash: what a retry must match to count as the same request
  ARGV[4] expires at (ms since epoch)
  ARGV[5] lifetime of the idempotency key (ms)

  Returns {code, request id}:
     1  created
     0  a request with this idempotency key and the same content exists (its id)
    -1  the idempotency key is taken by a request with different content (its id)
]]
if KEYS[2] ~= "" then
  local existing = redis.call("GET", KEYS[2])
  if existing then
    local sep = string.find(existing, " ", 1, true)
    local existingId = string.sub(existing, 1, sep - 1)
    local existingHash = string.sub(existing, sep + 1)
    if existingHash == ARGV[3] then
      return {0, existingId}
    end
    return {-1, existingId}
  end
end

local fields = cjson.decode(ARGV[2])
local args = {}
for k, v in pairs(fields) do
  args[#args + 1] = k
  args[#args + 1] = v
end
redis.call("HSET", KEYS[1], unpack(args))
redis.call("ZADD", KEYS[3], ARGV[4], ARGV[1])
if KEYS[2] ~= "" then
  redis.call("SET", KEYS[2], ARGV[1] .. " " .. ARGV[3], "PX", ARGV[5])
end
return {1, ARGV[1]}
