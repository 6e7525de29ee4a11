--[[
  Undoes a redemption whose audit record could not be written, so the caller may
  retry; only if it is still exactly the one this broker wrote.

  KEYS[1] redemption key        ({prefix}redeemed:{request id or jti})
  ARGV[1] the redemption record this broker wrote

  Returns 1 when released, 0 when the key holds something else (or nothing).
]]
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
  return 1
end
return 0
