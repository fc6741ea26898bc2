--- LuaSocket + LuaSec: N sequential calls with ssl.https.request.
--   lua5.4 bench/luasocket.lua URL CA USER PASS N [BODYFILE]
-- Prints the elapsed seconds.  LuaSec's https.request opens a new TCP and
-- TLS connection for every call (it sends "Connection: close"); there is no
-- keep-alive.  Each answer is decoded with cjson, as lua-keyfactor does.
local https = require "ssl.https"
local ltn12 = require "ltn12"
local mime = require "mime"
local socket = require "socket"
local cjson = require "cjson"

local url, ca, user, password = arg[1], arg[2], arg[3], arg[4]
local n = assert(tonumber(arg[5]), "usage: luasocket.lua URL CA USER PASS N [BODYFILE]")
local body
if arg[6] then
  local f = assert(io.open(arg[6], "rb"))
  body = f:read("a")
  f:close()
end
local headers = {
  ["accept"] = "application/json",
  ["content-type"] = "application/json",
  ["x-keyfactor-requested-with"] = "APIClient",
  ["x-keyfactor-api-version"] = "1",
  ["authorization"] = "Basic " .. mime.b64(user .. ":" .. password),
}
if body then headers["content-length"] = tostring(#body) end

local t0 = socket.gettime()
for _ = 1, n do
  local chunks = {}
  local ok, status = https.request {
    url = url, method = body and "POST" or "GET", headers = headers,
    source = body and ltn12.source.string(body) or nil,
    sink = ltn12.sink.table(chunks),
    cafile = ca, verify = "peer", mode = "client", protocol = "any",
    options = { "all", "no_sslv2", "no_sslv3" },
  }
  if not ok or status ~= 200 then
    io.stderr:write("luasocket: ", tostring(status), "\n")
    os.exit(1)
  end
  cjson.decode(table.concat(chunks))
end
print(string.format("%.6f", socket.gettime() - t0))
