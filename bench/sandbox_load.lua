-- The sandbox under load and under hostile clients (issue 16 item 6).
-- Prints a Markdown section for bench/RESULTS.md (bench/run appends it):
--   * requests/s and latency percentiles of GET /Status/Endpoints at 1, 16
--     and 100 concurrent keep-alive clients (lua-http on cqueues, one TLS
--     connection per client);
--   * the same 16-client run while 500 slowloris connections trickle headers;
--   * the sandbox's RSS (now and peak) after each hostile case.
-- usage: lua5.4 bench/sandbox_load.lua [seconds per run (default 5)]
local sandbox = require "keyfactor.sandbox"
local cqueues = require "cqueues"
local socket = require "cqueues.socket"
local http_client = require "http.client"
local http_headers = require "http.headers"
local ssl_context = require "openssl.ssl.context"
local basexx = require "basexx"

local SECONDS = tonumber(arg[1]) or 5
local SLOWLORIS = 500

local sb = sandbox.start{ port = 0 }
local port = tonumber(sb.base:match(":(%d+)$"))
local AUTH = "Basic " .. basexx.to_base64(sb.username .. ":" .. sb.password)

local function tls_ctx()
  local ctx = ssl_context.new("TLS", false)
  ctx:setVerify(ssl_context.VERIFY_NONE)
  return ctx
end

local function rss()
  local f = assert(io.open("/proc/" .. sb.pid .. "/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) / 1024, tonumber(s:match("VmHWM:%s*(%d+)")) / 1024
end

-- One client: a keep-alive connection sending GETs until `deadline`.
local function client(latencies, deadline, errors)
  local conn = assert(http_client.connect{ host = "127.0.0.1", port = port, tls = true, ctx = tls_ctx(),
    version = 1.1 })
  while cqueues.monotime() < deadline do
    local t0 = cqueues.monotime()
    local stream = conn:new_stream()
    local h = http_headers.new()
    h:append(":method", "GET")
    h:append(":scheme", "https")
    h:append(":authority", "127.0.0.1")
    h:append(":path", "/KeyfactorAPI/Status/Endpoints")
    h:append("authorization", AUTH)
    h:append("x-keyfactor-requested-with", "APIClient")
    local ok = stream:write_headers(h, true, 10)
    local headers = ok and stream:get_headers(10)
    local body = headers and stream:get_body_as_string(10)
    if not body or headers:get(":status") ~= "200" then
      errors[1] = errors[1] + 1
      conn:close()
      conn = assert(http_client.connect{ host = "127.0.0.1", port = port, tls = true, ctx = tls_ctx(),
        version = 1.1 })
    else
      latencies[#latencies + 1] = cqueues.monotime() - t0
    end
    stream:shutdown()
  end
  conn:close()
end

local function percentile(sorted, p)
  return sorted[math.max(1, math.ceil(#sorted * p))] or 0
end

local function load(n)
  local cq = cqueues.new()
  local latencies, errors = {}, { 0 }
  local t0 = cqueues.monotime()
  local deadline = t0 + SECONDS
  for _ = 1, n do cq:wrap(client, latencies, deadline, errors) end
  assert(cq:loop())
  local elapsed = cqueues.monotime() - t0
  table.sort(latencies)
  return { n = n, rps = #latencies / elapsed, p50 = percentile(latencies, 0.5) * 1000,
    p99 = percentile(latencies, 0.99) * 1000, errors = errors[1], count = #latencies }
end

-- Slowloris: TLS connections that send a request line and then one header
-- line every few seconds, never finishing. Returns the cqueue that holds them.
local function slowloris(n, until_time)
  local cq = cqueues.new()
  local opened = { 0 }
  for i = 1, n do
    cq:wrap(function()
      local s = socket.connect{ host = "127.0.0.1", port = port }
      if not s or not s:connect(10) or not s:starttls(tls_ctx(), 10) then return end
      opened[1] = opened[1] + 1
      s:setmode("b", "b")
      s:write("GET /KeyfactorAPI/Status/Endpoints HTTP/1.1\r\nHost: 127.0.0.1\r\n")
      s:flush()
      while cqueues.monotime() < until_time do
        cqueues.sleep(2)
        if not s:write("X-Slow-" .. i .. ": a\r\n") or not s:flush() then break end
      end
      s:close()
    end)
  end
  return cq, opened
end

local function curl(args, feed)
  local p = assert(io.popen(string.format((feed and feed .. " | " or "")
    .. "curl -s -o /dev/null -w '%%{http_code}' -m 60 --cacert %s -u '%s:%s' "
    .. "-H 'x-keyfactor-requested-with: bench' -H 'Content-Type: application/json' %s",
    sb.ca_file, sb.username, sb.password, args)))
  local code = p:read("a")
  p:close()
  return code
end

local out = {}
local function say(fmt, ...) out[#out + 1] = string.format(fmt, ...) end

say("## 8. The sandbox under load and hostile clients")
say("")
say("`lua5.4 bench/sandbox_load.lua %g` (run by `bench/run`): GET /KeyfactorAPI/Status/Endpoints "
  .. "(Basic auth, routing, JSON) from N keep-alive TLS clients (lua-http on cqueues, one process, "
  .. "%g s per row) against one sandbox process. The client shares the machine's cores with the "
  .. "sandbox (and with whatever else runs), so these are lower bounds. Before issue 16 one request "
  .. "with `Content-Length: abc` left the sandbox at ~97%% CPU serving nothing, a 20 MB body froze it "
  .. "on the second or third try, and a 1 GB chunked body took its RSS to 2.9 GB.", SECONDS, SECONDS)
say("")
say("| clients | requests/s | p50 ms | p99 ms | errors |")
say("|---:|---:|---:|---:|---:|")
for _, n in ipairs{ 1, 16, 100 } do
  local r = load(n)
  say("| %d | %.0f | %.1f | %.1f | %d |", n, r.rps, r.p50, r.p99, r.errors)
end

-- 16 clients while 500 slowloris connections are held open
local hold = cqueues.new()
local lor_cq, opened = slowloris(SLOWLORIS, cqueues.monotime() + 3 + SECONDS + 1) -- open, load, margin
hold:wrap(function() assert(lor_cq:loop()) end)
local lor_rss
hold:wrap(function()
  cqueues.sleep(3) -- let the connections open
  local r = load(16)
  lor_rss = { rss() }
  say("| 16, with %d slowloris connections open | %.0f | %.1f | %.1f | %d |",
    opened[1], r.rps, r.p50, r.p99, r.errors)
end)
assert(hold:loop())
say("")

local big = os.tmpname()
assert(os.execute("head -c 20000000 /dev/zero | tr '\\0' 'x' > " .. big))
local cases = {}
local function case(name, fn)
  local answer = fn()
  local now, peak = rss()
  cases[#cases + 1] = string.format("| %s | %s | %.0f | %.0f |", name, answer, now, peak)
end
local start_rss, start_peak = rss()
cases[#cases + 1] = string.format("| after the load and slowloris runs above | | %.0f | %.0f |", start_rss, start_peak)
cases[#cases + 1] = string.format("| during 500 slowloris connections | | %.0f | %.0f |", lor_rss[1], lor_rss[2])
case("`Content-Length: abc`, 10 times", function()
  local codes = {}
  for _ = 1, 10 do codes[curl("-H 'Content-Length: abc' -X POST " .. sb.url .. "/Certificates/Revoke")] = true end
  local list = {}
  for c in pairs(codes) do list[#list + 1] = c end
  return table.concat(list, ",")
end)
case("20 MB body without `Expect:`, 5 times", function()
  local codes = {}
  for i = 1, 5 do codes[i] = curl("-H 'Expect:' --data-binary @" .. big .. " " .. sb.url .. "/Certificates/Revoke") end
  return table.concat(codes, ",")
end)
case("1 GB chunked body", function()
  return curl("-H 'Transfer-Encoding: chunked' -X POST -T - " .. sb.url .. "/Certificates/Revoke",
    "head -c 1000000000 /dev/zero")
end)
os.remove(big)
local final = curl(sb.url .. "/Status/Endpoints")
say("Hostile cases, one after another on the same sandbox (RSS of the sandbox process, MiB; "
  .. "peak = VmHWM since start). Status 000 = curl saw the connection closed before reading the "
  .. "answer. Afterwards GET /Status/Endpoints answered %s.", final)
say("")
say("| case | status | RSS MiB | peak MiB |")
say("|---|---|---:|---:|")
for _, line in ipairs(cases) do say("%s", line) end
say("")
sb:stop()
io.write(table.concat(out, "\n"), "\n")
