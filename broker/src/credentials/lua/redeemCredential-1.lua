--[[
  Marks an approval (or, for a credential with no approval, the credential) as
  used, once. The first caller wins; every later caller learns who won and when.

  KEYS[1] redemption key        ({prefix}redeemed:{request id or jti})

  ARGV[1] redemption record, JSON {jti, request_id, by, at}
  ARGV[2] how long to remember it (ms): until the credential has expired for sure

  Returns {1, ARGV[1]} when this call redeemed it, {0, first record} when it was redeemed before.
]]
local existing = redis.call("GET", KEYS[1])
if existing then
  return {0, existing}
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return {1, ARGV[1]}
