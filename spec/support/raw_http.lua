-- Starts spec/support/raw_http.py (a server sending answers no real server
-- sends) and reads the request lines it logged.
local raw_http = {}

local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/support"

--- `mode`: see raw_http.py.  Returns {url, requests(), stop()}.
function raw_http.start(mode)
  local log = os.tmpname()
  local pid_file = os.tmpname()
  local pipe = assert(io.popen(string.format("env -u LD_PRELOAD python3 %s/raw_http.py '%s' %s & echo $! > %s; wait",
    HERE, mode, log, pid_file), "r"))
  local port = assert(tonumber(pipe:read("*l")), "raw_http.py did not start")
  local server = { url = "http://127.0.0.1:" .. port }
  function server.requests()
    local n = 0
    local f = io.open(log)
    if f then
      for _ in f:lines() do n = n + 1 end
      f:close()
    end
    return n
  end
  function server.stop()
    local f = io.open(pid_file)
    local pid = f and f:read("*l")
    if f then f:close() end
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    pipe:close()
    os.remove(log)
    os.remove(pid_file)
  end
  return server
end

return raw_http
