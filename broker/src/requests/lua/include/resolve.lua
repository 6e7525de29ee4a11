-- Shared by the transition scripts (inlined by scripts.ts at "-- @include resolve").
-- Ends a pending request: sets its end state once, takes it out of the pending
-- indexes, records the "resolved" outbox entry, announces the change, and starts
-- the retention clock on what is left of it.
local function resolveRequest(requestKey, votesKey, pendingKey, workloadPendingKey, outboxKey, id, state, message, now, retentionMs)
  redis.call("HSET", requestKey, "state", state, "resolved_at", now, "resolution_message", message)
  redis.call("ZREM", pendingKey, id)
  redis.call("ZREM", workloadPendingKey, id)
  redis.call("HSET", outboxKey, id .. "|resolved", now)
  redis.call("PEXPIRE", requestKey, retentionMs)
  redis.call("PEXPIRE", votesKey, retentionMs)
end
