--[[
  Ends a pending request whose deadline has passed. Run by the expiry job at the
  deadline and by the sweeper for anything a lost job missed; running it twice,
  or early, changes nothing.

  KEYS[1] request hash          ({prefix}req:{id})
  KEYS[2] votes hash            ({prefix}req:{id}:votes)
  KEYS[3] pending set           ({prefix}pending)
  KEYS[4] workload pending set  ({prefix}pending:wl:{requester hash})
  KEYS[5] outbox hash           ({prefix}outbox)

  ARGV[1] request id
  ARGV[2] now (ms since epoch)
  ARGV[3] pub/sub channel announcing changes
  ARGV[4] how long a resolved request is kept (ms)

  Returns {code, detail}:
     6  EXPIRED         expired now (detail: the deadline, ms)
    -1  NOT_FOUND       no such request (its id is dropped from the pending set)
    -4  RESOLVED        already ended (detail: its state)
    -7  NOT_DUE         the deadline is still ahead (detail: the deadline, ms)
]]
-- @include resolve

local state = redis.call("HGET", KEYS[1], "state")
if not state then
  redis.call("ZREM", KEYS[3], ARGV[1])
  redis.call("ZREM", KEYS[4], ARGV[1])
  return {-1, ""}
end
if state ~= "PENDING_APPROVAL" then
  return {-4, state}
end
local expiresAt = redis.call("HGET", KEYS[1], "expires_at")
if tonumber(ARGV[2]) < tonumber(expiresAt) then
  return {-7, expiresAt}
end
local approvals = redis.call("HGET", KEYS[1], "approvals") or "0"
local required = redis.call("HGET", KEYS[1], "approvals_required")
redis.call("HINCRBY", KEYS[1], "version", 1)
resolveRequest(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], "EXPIRED",
  "expired with " .. approvals .. " of " .. required .. " approval(s)", ARGV[2], ARGV[4])
redis.call("PUBLISH", ARGV[3], ARGV[1])
return {6, expiresAt}
