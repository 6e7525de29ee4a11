--[[
  Registers one passkey for a principal, unless the credential is already
  registered or the principal has as many as allowed.

  KEYS[1] the principal's passkeys   (hash credential id -> passkey JSON)

  ARGV[1] credential id
  ARGV[2] passkey JSON
  ARGV[3] most passkeys per principal

  Returns {code}:
     1  REGISTERED
    -1  EXISTS       this credential is registered already
    -2  TOO_MANY     the principal has ARGV[3] passkeys
]]
if redis.call("HEXISTS", KEYS[1], ARGV[1]) == 1 then
  return {-1}
end
if redis.call("HLEN", KEYS[1]) >= tonumber(ARGV[3]) then
  return {-2}
end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
return {1}
