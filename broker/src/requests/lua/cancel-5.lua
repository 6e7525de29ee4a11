--[[
  The requester withdraws its pending request. That the caller is the requester
  is checked before (the requester never changes); the state is checked here.

  KEYS[1] request hash          ({prefix}req:{id})
  KEYS[2] votes hash            ({prefix}req:{id}:votes)
  KEYS[3] pending set           ({prefix}pending)
  KEYS[4] workload pending set  ({prefix}pending:wl:{requester hash})
  KEYS[5] outbox hash           ({prefix}outbox)

  ARGV[1] request id
  ARGV[2] now (ms since epoch)
  ARGV[3] resolution message
  ARGV[4] pub/sub channel announcing changes
  ARGV[5] how long a resolved request is kept (ms)

  Returns {code, detail}:
     7  CANCELLED
    -1  NOT_FOUND
    -4  RESOLVED        already ended (detail: its state)
    -5  EXPIRY_DUE      past its deadline; the caller expires it instead
]]
-- @include resolve

local state = redis.call("HGET", KEYS[1], "state")
if not state then
  return {-1, ""}
end
if state ~= "PENDING_APPROVAL" then
  return {-4, state}
end
if tonumber(ARGV[2]) >= tonumber(redis.call("HGET", KEYS[1], "expires_at")) then
  return {-5, ""}
end
redis.call("HINCRBY", KEYS[1], "version", 1)
resolveRequest(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], "CANCELLED", ARGV[3], ARGV[2], ARGV[5])
redis.call("PUBLISH", ARGV[4], ARGV[1])
return {7, ""}
