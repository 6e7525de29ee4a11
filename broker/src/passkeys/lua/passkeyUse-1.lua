--[[
  Records a verified assertion's signature counter: it must be above the one
  stored, unless the authenticator keeps no counter (both 0). A counter that
  goes back means the credential was cloned (or the assertion replayed).

  KEYS[1] the principal's passkeys   (hash credential id -> passkey JSON)

  ARGV[1] credential id
  ARGV[2] the assertion's counter
  ARGV[3] now (ms since the epoch)

  Returns {code, detail}:
     1  RECORDED
    -1  NOT_FOUND   the principal has no such passkey (removed meanwhile)
    -2  REGRESSED   the counter is not above the stored one (detail: the stored counter)
]]
local text = redis.call("HGET", KEYS[1], ARGV[1])
if not text then
  return {-1, ""}
end
local passkey = cjson.decode(text)
local stored = tonumber(passkey.counter or 0)
local counter = tonumber(ARGV[2])
if (counter > 0 or stored > 0) and counter <= stored then
  return {-2, tostring(stored)}
end
passkey.counter = counter
passkey.last_used_at = tonumber(ARGV[3])
redis.call("HSET", KEYS[1], ARGV[1], cjson.encode(passkey))
return {1, ""}
