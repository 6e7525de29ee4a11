--[[
  Removes one of a principal's passkeys.

  KEYS[1] the principal's passkeys   (hash credential id -> passkey JSON)

  ARGV[1] credential id

  Returns {code, passkey JSON}:
     1  REMOVED    (the passkey as it was)
    -1  NOT_FOUND  the principal has no such passkey
]]
local passkey = redis.call("HGET", KEYS[1], ARGV[1])
if not passkey then
  return {-1, ""}
end
redis.call("HDEL", KEYS[1], ARGV[1])
return {1, passkey}
