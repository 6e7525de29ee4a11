--[[
  Marks a request's stored credential as audited: its credential_issued record is
  durable, so the credential may leave the broker. A credential key that expired
  meanwhile is not recreated.

  KEYS[1] credential hash       ({prefix}req:{id}:credential)

  Returns {code}:
     8  STORED      marked
    -1  NOT_FOUND   no credential stored (the collection window closed)
]]
if redis.call("EXISTS", KEYS[1]) == 0 then
  return {-1}
end
redis.call("HSET", KEYS[1], "audited", "1")
return {8}
