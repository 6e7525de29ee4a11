--[[
  Stores the one credential of an approved request, or returns the one already
  stored. The credential is minted before this runs; when another collector won
  the race, the freshly minted one is discarded (it never left the broker).

  KEYS[1] request hash          ({prefix}req:{id})
  KEYS[2] credential hash       ({prefix}req:{id}:credential)

  ARGV[1] x5t#S256 of the collecting certificate
  ARGV[2] now (ms since epoch)
  ARGV[3] collection window after approval (ms)
  ARGV[4] token (compact JWS)
  ARGV[5] jti
  ARGV[6] credential expiry (ms since epoch)

  Returns {code, ...}:
     8  STORED                          this token is now the request's credential
     9  EXISTING, token, jti, exp, audited   a credential was stored before (audited "1" once its record is durable)
    -1  NOT_FOUND
    -8  NOT_APPROVED, state
    -9  CERTIFICATE_MISMATCH            the request was made with another certificate
   -10  WINDOW_CLOSED, closed at (ms)   too late to collect
]]
local fields = redis.call("HMGET", KEYS[1], "state", "certificate_thumbprint", "resolved_at")
if not fields[1] then
  return {-1}
end
if fields[1] ~= "APPROVED" then
  return {-8, fields[1]}
end
if fields[2] ~= ARGV[1] then
  return {-9}
end
local existing = redis.call("HMGET", KEYS[2], "token", "jti", "expires_at", "audited")
if existing[1] then
  return {9, existing[1], existing[2], existing[3], existing[4]}
end
local closesAt = tonumber(fields[3]) + tonumber(ARGV[3])
if tonumber(ARGV[2]) >= closesAt then
  return {-10, tostring(closesAt)}
end
redis.call("HSET", KEYS[2], "token", ARGV[4], "jti", ARGV[5], "expires_at", ARGV[6], "audited", "0", "minted_at", ARGV[2])
-- Gone when the window closes or the credential expires, whichever is first.
redis.call("PEXPIREAT", KEYS[2], math.min(closesAt, tonumber(ARGV[6])))
redis.call("HSET", KEYS[1], "collected_at", ARGV[2])
return {8}
