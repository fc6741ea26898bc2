-- A plain-HTTP server on 127.0.0.1 that records every request reaching it
-- (method, request target, headers, body) and answers 200 {}: to see the
-- exact bytes the client puts on the wire, and whether a proxy was used
-- (a proxied request's target is the absolute URL).  It runs in a lua5.4
-- child process (cqueues), stops on GET /_stop, and in any case after 60 s.
local cjson = require "cjson"

local capture = {}
local Capture = {}
Capture.__index = Capture

local SERVER = [==[
local socket = require "cqueues.socket"
local cjson = require "cjson"
local log = assert(io.open(arg[1], "w"))
local server = socket.listen { host = "127.0.0.1", port = 0 }
assert(server:listen())
local _, _, port = server:localname()
io.stdout:write(port, "\n")
io.stdout:flush()
local deadline = os.time() + 60
while os.time() < deadline do
  local conn = server:accept(0.5)
  if conn then
    conn:settimeout(5)
    conn:setmode("b", "b")
    local function line() return ((conn:read("*l") or ""):gsub("\r$", "")) end
    local method, target = line():match("^(%S+) (%S+)")
    local headers = {}
    while true do
      local h = line()
      if h == "" then break end
      local name, value = h:match("^([^:]+):%s*(.-)%s*$")
      if name then headers[name:lower()] = value end
    end
    local length = tonumber(headers["content-length"] or "0") or 0
    local body = length > 0 and conn:read(length) or ""
    log:write(cjson.encode { method = method, target = target, headers = headers, body = body }, "\n")
    log:flush()
    conn:write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    conn:flush()
    conn:close()
    if target == "/_stop" then break end
  end
end
log:close()
]==]

--- Starts a capture server; `server.url` is its http:// base.
function capture.start()
  local script, log = os.tmpname(), os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(SERVER)
  f:close()
  local pipe = assert(io.popen("env -u LD_PRELOAD lua5.4 " .. script .. " " .. log, "r"))
  local port = tonumber(pipe:read("l"))
  assert(port, "the capture server did not start")
  return setmetatable({ port = port, url = "http://127.0.0.1:" .. port, pipe = pipe, script = script, log = log },
    Capture)
end

--- The requests recorded so far, oldest first.
function Capture:requests()
  local found = {}
  local f = io.open(self.log, "r")
  if not f then return found end
  for line in f:lines() do found[#found + 1] = cjson.decode(line) end
  f:close()
  return found
end

function Capture:stop()
  -- through the client itself (curl(1) hangs under check-asan's preloaded runtime)
  local kf = require("keyfactor").new { url = self.url, proxy = false }
  kf:request("GET", "/_stop")
  kf:close()
  self.pipe:close()
  os.remove(self.script)
  os.remove(self.log)
end

return capture
