--[[
  Takes a single-use item (a WebAuthn challenge, a sign-in link): returns it and
  deletes it in one step, leaving a marker so that a second use is told apart
  from an item that never existed or expired.

  KEYS[1] the item              (string with a TTL)
  KEYS[2] its "used" marker     (string with a TTL)

  ARGV[1] how long the marker is kept (ms)

  Returns {code, value}:
     1  TAKEN     the item (value: its content); now deleted
    -1  USED      it was taken before
    -2  UNKNOWN   it never existed, or expired
]]
local value = redis.call("GET", KEYS[1])
if not value then
  if redis.call("EXISTS", KEYS[2]) == 1 then
    return {-1, ""}
  end
  return {-2, ""}
end
redis.call("DEL", KEYS[1])
redis.call("SET", KEYS[2], "1", "PX", tonumber(ARGV[1]))
return {1, value}
