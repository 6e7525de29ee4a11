--[[
  Records one person's vote on a pending request and resolves it when a threshold
  is reached. Who may vote (approver lists, groups, separation of duties, step-up)
  is checked before, on the request's immutable fields; what can change (state,
  expiry, earlier votes) is checked here, atomically.

  KEYS[1] request hash          ({prefix}req:{id})
  KEYS[2] votes hash            ({prefix}req:{id}:votes), principal -> vote JSON
  KEYS[3] pending set           ({prefix}pending)
  KEYS[4] workload pending set  ({prefix}pending:wl:{requester hash})
  KEYS[5] outbox hash           ({prefix}outbox)

  ARGV[1] request id
  ARGV[2] principal name
  ARGV[3] vote JSON (principal, decision, channel, at, step_up, reason, delivery_id)
  ARGV[4] "approve" or "deny"
  ARGV[5] now (ms since epoch)
  ARGV[6] pub/sub channel announcing changes
  ARGV[7] how long a resolved request is kept (ms)

  Returns {code, detail}:
     3  COUNTED         counted; still pending (detail: version)
     4  APPROVED        counted; the request is now APPROVED
     5  DENIED          counted; the request is now DENIED
    -1  NOT_FOUND
    -4  RESOLVED        the request already ended (detail: its state)
    -5  EXPIRY_DUE      past its deadline but not yet expired; the caller expires it
    -6  ALREADY_VOTED   this principal already voted (detail: the earlier vote JSON)
]]
-- @include resolve

local state = redis.call("HGET", KEYS[1], "state")
if not state then
  return {-1, ""}
end
if state ~= "PENDING_APPROVAL" then
  return {-4, state}
end
local now = tonumber(ARGV[5])
if now >= tonumber(redis.call("HGET", KEYS[1], "expires_at")) then
  return {-5, ""}
end
local earlier = redis.call("HGET", KEYS[2], ARGV[2])
if earlier then
  return {-6, earlier}
end

redis.call("HSET", KEYS[2], ARGV[2], ARGV[3])
local approvals = tonumber(redis.call("HGET", KEYS[1], "approvals") or "0")
local denials = tonumber(redis.call("HGET", KEYS[1], "denials") or "0")
if ARGV[4] == "approve" then
  approvals = redis.call("HINCRBY", KEYS[1], "approvals", 1)
else
  denials = redis.call("HINCRBY", KEYS[1], "denials", 1)
end
local version = redis.call("HINCRBY", KEYS[1], "version", 1)
redis.call("HSET", KEYS[5], ARGV[1] .. "|vote|" .. ARGV[2], ARGV[5])

local code = 3
local required = tonumber(redis.call("HGET", KEYS[1], "approvals_required"))
local denyThreshold = tonumber(redis.call("HGET", KEYS[1], "deny_threshold") or "1")
if ARGV[4] == "approve" and approvals >= required then
  -- Name everyone whose approval counted, in the order they voted.
  local votes = redis.call("HVALS", KEYS[2])
  local approvers = {}
  for _, v in ipairs(votes) do
    local vote = cjson.decode(v)
    if vote.decision == "approve" then
      approvers[#approvers + 1] = {vote.at, vote.principal .. " (" .. vote.channel .. ")"}
    end
  end
  table.sort(approvers, function(a, b) return a[1] < b[1] end)
  local names = {}
  for i, a in ipairs(approvers) do names[i] = a[2] end
  resolveRequest(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], "APPROVED", "approved by " .. table.concat(names, ", "), ARGV[5], ARGV[7])
  code = 4
elseif ARGV[4] == "deny" and denials >= denyThreshold then
  local vote = cjson.decode(ARGV[3])
  local message = "denied by " .. vote.principal .. " (" .. vote.channel .. ")"
  if vote.reason ~= "" then
    message = message .. ": " .. vote.reason
  end
  resolveRequest(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], "DENIED", message, ARGV[5], ARGV[7])
  code = 5
end
redis.call("PUBLISH", ARGV[6], ARGV[1])
return {code, tostring(version)}
