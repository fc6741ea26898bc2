--- The host benchmark: HAProxy (nbthread 1 and 2) and nginx (1 and 2
-- workers) with the test application of spec/hosts/app, under a bounded load
-- of plain requests, while one Keyfactor call waits 3 s in the sandbox
-- (fault delay_ms), made in a request handler or in a task/timer, with the
-- client blocking (no attach) or attached (keyfactor.haproxy / keyfactor.ngx).
--
--   lua5.4 bench/hosts.lua BIN_DIR RESULTS_MD [smoke]
-- Writes its section into RESULTS_MD (between the hosts markers; replaced
-- if present, else put before "## Targets" or appended).  BIN_DIR receives
-- the load generator (bench/hosts_load.c).  127.0.0.1 only; ~2.5 minutes.
local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/bench/[^/]*$") or "."
package.path = ROOT .. "/spec/?.lua;" .. package.path
local host = require "hosts.host"
local sandbox = require "keyfactor.sandbox"
local keyfactor = require "keyfactor"
local clock = require("keyfactor.core").now
local socket = require "socket"

local bin, out_md, smoke = arg[1], arg[2], arg[3] == "smoke"
assert(bin and out_md, "usage: hosts.lua BIN_DIR RESULTS_MD [smoke]")

local DELAY_MS = smoke and 300 or 3000
local LOAD_S = smoke and 1.5 or 6          -- each load run; the call starts after LEAD_S
local LEAD_S = smoke and 0.5 or 1
local RATE = 100                           -- req/s for each of the two loads (200 in all)
local KEEPALIVE_CONNS = 4
local FAST_CALLS = smoke and 10 or 100
local CPU_CALLS = smoke and 1 or 3

local LOAD = bin .. "/hosts_load"
local out, code = host.sh(("cc -O2 -std=c99 -Wall -Wextra -o %s %s"):format(host.quote(LOAD),
  host.quote(ROOT .. "/bench/hosts_load.c")))
assert(code == 0, "cc hosts_load.c: " .. out)
host.build("lua5.3")
host.build("luajit")

local CONFIGS = {
  { name = "HAProxy, nbthread 1", start = host.haproxy, opts = { nbthread = 1 }, task = "task" },
  { name = "HAProxy, nbthread 2", start = host.haproxy, opts = { nbthread = 2 }, task = "task" },
  { name = "nginx, 1 worker", start = host.nginx, opts = { workers = 1 }, task = "timer" },
  { name = "nginx, 2 workers", start = host.nginx, opts = { workers = 2 }, task = "timer" },
}
local MODES = { "blocking", "attached" }
-- KF_HOSTS_ONLY="1,3" / KF_HOSTS_MODES="attached": a subset, for experiments.
if os.getenv("KF_HOSTS_ONLY") then
  local picked = {}
  for i in os.getenv("KF_HOSTS_ONLY"):gmatch("%d+") do picked[#picked + 1] = CONFIGS[tonumber(i)] end
  CONFIGS = picked
end
if os.getenv("KF_HOSTS_MODES") then
  MODES = {}
  for m in os.getenv("KF_HOSTS_MODES"):gmatch("%a+") do MODES[#MODES + 1] = m end
end

---------------------------------------------------------------- measuring
local function percentile(sorted, p)
  if #sorted == 0 then return nil end
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

-- CPU time (s) of the host: every thread of its process and of its children.
local function cpu_seconds(h)
  local pids = { h.pid }
  for _, p in ipairs(host.children(h.pid)) do pids[#pids + 1] = p end
  local total = 0
  for _, pid in ipairs(pids) do
    local list = io.popen("cat /proc/" .. pid .. "/task/*/schedstat 2>/dev/null")
    for line in list:lines() do total = total + (tonumber(line:match("^(%d+)")) or 0) end
    list:close()
  end
  return total / 1e9
end

-- Starts the load generator in the background; returns the file it writes.
local function start_load(h, mode, tag)
  local file = h.dir .. "/load-" .. tag .. ".txt"
  os.execute(("%s %d /plain %d %s %s %d >%s 2>&1 &"):format(host.quote(LOAD), h.port, RATE, tostring(LOAD_S),
    mode, KEEPALIVE_CONNS, host.quote(file)))
  return file
end

-- Waits until the load generator wrote every line; returns its requests.
local function read_load(file)
  local want = math.floor(RATE * LOAD_S)
  for _ = 1, 400 do
    local n = select(2, host.read_file(file):gsub("\n", "")) or 0
    if n >= want then break end
    socket.sleep(0.05)
  end
  local reqs = {}
  for line in host.read_file(file):gmatch("[^\n]+") do
    local sched, ms, status = line:match("^(%S+) (%S+) (%d+)$")
    if sched then reqs[#reqs + 1] = { sched = tonumber(sched), ms = tonumber(ms), status = tonumber(status) } end
  end
  return reqs
end

local function stats(reqs, from, to)
  local lat, failed = {}, 0
  for _, r in ipairs(reqs) do
    if r.sched >= from and r.sched <= to then
      if r.status == 200 then lat[#lat + 1] = r.ms else failed = failed + 1 end
    end
  end
  table.sort(lat)
  return { n = #lat, failed = failed, p50 = percentile(lat, 0.5), p99 = percentile(lat, 0.99),
           max = lat[#lat] }
end

local function ms_of(body) return tonumber(body and body:match("ms=([%d.]+)")) end

-- Makes the delayed call in a handler or a task; returns start time and
-- the call's own duration (ms, measured inside the host).
local function delayed_call(sb, h, slow, where)
  sb:fault { method = "GET", path = "/KeyfactorAPI/Certificates/" .. slow, times = 1, delay_ms = DELAY_MS }
  local t0 = clock()
  if where == "handler" then
    local status, body = host.finish(host.begin(h.port, "/call?id=" .. slow), 60)
    assert(status == 200 and ms_of(body), "call: " .. tostring(body))
    return t0, ms_of(body)
  end
  assert(h:get("/spawn?id=" .. slow) == 202)
  for _ = 1, 1200 do
    local _, body = h:get("/result", 60)
    if body ~= "pending" then
      assert(ms_of(body), "task: " .. tostring(body))
      return t0, ms_of(body)
    end
    socket.sleep(0.01)
  end
  error("the task never finished")
end

---------------------------------------------------------------- the runs
local sb = sandbox.start { port = 0, job_delay = 0.05, lua = "lua5.4" }
local rows, calls = {}, {}
local ok, err = pcall(function()
  local kf = keyfactor.new { url = sb.url, ca_file = sb.ca_file, username = sb.username, password = sb.password }
  local function enroll(cn)
    local r = assert(kf:enroll { Template = "WebServer", Subject = "CN=" .. cn, format = "STORE" })
    return r.CertificateInformation.KeyfactorId
  end
  local fast, slow = enroll("fast.bench.example.com"), enroll("slow.bench.example.com")
  kf:close()
  for _, config in ipairs(CONFIGS) do
    for _, mode in ipairs(MODES) do
      io.stderr:write(("bench: hosts: %s, %s\n"):format(config.name, mode))
      local o = { url = sb.url, ca_file = sb.ca_file, username = sb.username, password = sb.password, mode = mode }
      for k, v in pairs(config.opts) do o[k] = v end
      local h = config.start(o)
      local run_ok, run_err = pcall(function()
        local call = { config = config.name, mode = mode }
        calls[#calls + 1] = call
        -- The fast call, warm: median duration inside the host.
        local fast_ms = {}
        for i = 1, FAST_CALLS do fast_ms[i] = ms_of(select(2, h:get("/call?id=" .. fast))) end
        table.sort(fast_ms)
        call.fast = percentile(fast_ms, 0.5)
        -- Event-loop CPU of a delayed call, no load, idle CPU over the same
        -- time subtracted: the median of CPU_CALLS calls (one varies by ±40%).
        local idle0, c0 = cpu_seconds(h), clock()
        socket.sleep(smoke and 0.2 or 1)
        local idle_rate = (cpu_seconds(h) - idle0) / (clock() - c0)
        local cpu = {}
        for i = 1, CPU_CALLS do
          local before = cpu_seconds(h)
          local started, call_ms = delayed_call(sb, h, slow, "handler")
          cpu[i] = (cpu_seconds(h) - before - idle_rate * (clock() - started)) * 1000
          call.handler = call_ms - DELAY_MS         -- replaced by the run under load, if any
        end
        table.sort(cpu)
        call.cpu = percentile(cpu, 0.5)
        -- Under load, in a handler and in a task/timer.
        for _, where in ipairs(os.getenv("KF_HOSTS_NO_LOAD") and {} or { "handler", "task" }) do
          local files = { open = start_load(h, "open", where .. "-open"),
                          keepalive = start_load(h, "keepalive", where .. "-keep") }
          socket.sleep(LEAD_S)
          local t0 = clock()
          local called, started, ms = pcall(delayed_call, sb, h, slow, where)
          -- A host may not survive a blocking call: HAProxy's watchdog kills
          -- the process when a thread spins on the Lua lock for 2 s.
          local died = false
          for _ = 1, called and 0 or 40 do   -- the watchdog's kill may take a moment
            if not host.alive(h.pid) then died = true break end
            socket.sleep(0.05)
          end
          if not called and not died then error(started, 0) end
          if called then t0, call[where] = started, ms - DELAY_MS end
          for _, load in ipairs { "open", "keepalive" } do
            local reqs = read_load(files[load])
            local first = reqs[1] and reqs[1].sched or t0
            rows[#rows + 1] = {
              config = config.name, where = where == "task" and config.task or "handler", mode = mode, load = load,
              during = stats(reqs, t0, t0 + (ms or DELAY_MS) / 1000), before = stats(reqs, first, t0 - 0.05),
              died = died and host.read_file(h.log_file):match("[^\n]*about to kill the process[^\n]*"),
            }
          end
          if died then
            call[where .. "_died"] = true
            h:stop()
            h = config.start(o)
          end
        end
      end)
      h:stop()
      if not run_ok then error(run_err, 0) end
    end
  end
end)
sb:stop()
if not ok then
  io.stderr:write("bench/hosts.lua: ", tostring(err), "\n")
  os.exit(1)
end

---------------------------------------------------------------- the report
-- What the event-loop CPU is made of (measured while writing this).
local NOTE = "Event-loop CPU of an attached call: a host that can only sleep polls "
  .. "(`keyfactor.driver.polling`: first look after 1 ms, ×1.5 while nothing happens up to 50 ms, then 15% "
  .. "of the time nothing has happened, at most 250 ms apart), so a 3 s call takes about 30 wake-ups; each "
  .. "costs ~60–140 µs of the host's CPU on this VM (its scheduler, a Lua resume, a context switch; a bare "
  .. "`core.msleep` loop in HAProxy costs 34 µs a turn with 10 ms naps, 71–73 µs with 100–250 ms ones, caches "
  .. "gone cold; `session:step(0)` ~2 µs warm, ~25 µs cold). A slow call pays 50 ms or 15% of its time in "
  .. "latency for it, whichever is more (7% on average past a second, never more than 250 ms)."
local function f(x, p) return x and string.format("%." .. (p or 1) .. "f", x) or "n/a" end
local md = {}
local function w(line) md[#md + 1] = line end
w("<!-- hosts:begin (bench/hosts.lua) -->")
w("## 6. Inside event-loop hosts: plain requests while a Keyfactor call waits")
w("")
w(("`bench/hosts.lua` (run by `make bench`): HAProxy %s (Lua 5.3) and nginx %s with lua-nginx-module (LuaJIT), "
  .. "each with the test application of `spec/hosts/app/`. Two loads of plain requests run at once, %d req/s "
  .. "each for %s s: **open** (a new connection per request, sent on schedule whatever the others do) and "
  .. "**keep-alive** (%d persistent connections, each request on its connection as soon as it is due and the "
  .. "connection free); latency counts from the scheduled time (`bench/hosts_load.c`, epoll, C). %s s in, one "
  .. "`kf:certificate` call is made that the sandbox delays by %d ms (`sb:fault{delay_ms}`), in a request "
  .. "handler (HAProxy Lua service, nginx `content_by_lua`) or in a task/timer (`core.register_task` from an "
  .. "action, `ngx.timer.at`). **blocking**: the client as it is; **attached**: `keyfactor.haproxy/ngx.attach(kf)`. "
  .. "\"during\" is every plain request scheduled while the call was in flight; \"before\" the ones before it.")
  :format(host.sh("haproxy -v | head -1"):match("version (%S+)") or "?",
    (host.sh("nginx -v"):match("nginx/(%S+)") or "?"), RATE, tostring(LOAD_S), KEEPALIVE_CONNS,
    tostring(LEAD_S), DELAY_MS))
w("")
w("| host | call in | client | load | requests during | p50 ms | p99 ms | max ms | unanswered | p99 before ms |")
w("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
for _, r in ipairs(rows) do
  if r.died then
    w(("| %s | %s | %s | %s | %d | **host killed**: \"%s\" | | | %d | %s |"):format(r.config, r.where, r.mode,
      r.load, r.during.n, r.died:gsub("^%s+", ""), r.during.failed, f(r.before.p99)))
  else
    w(("| %s | %s | %s | %s | %d | %s | %s | %s | %d | %s |"):format(r.config, r.where, r.mode, r.load,
      r.during.n, f(r.during.p50), f(r.during.p99), f(r.during.max), r.during.failed, f(r.before.p99)))
  end
end
w("")
w(("The call itself: its added latency is its duration inside the host minus the %d ms the sandbox waits; "
  .. "the event-loop CPU is the host's CPU time (all threads, `/proc/PID/task/*/schedstat`) during a delayed "
  .. "call without load, minus its idle CPU over the same time, the median of %d such calls; the fast call is "
  .. "the median of %d undelayed `kf:certificate` calls in a handler, inside the host (keep-alive, warm).")
  :format(DELAY_MS, CPU_CALLS, FAST_CALLS))
w("")
w("| host | client | added latency, handler ms | added latency, task/timer ms | event-loop CPU per call ms "
  .. "| fast call ms |")
w("|---|---|---:|---:|---:|---:|")
for _, c in ipairs(calls) do
  w(("| %s | %s | %s | %s | %s | %s |"):format(c.config, c.mode, c.handler_died and "killed" or f(c.handler),
    c.task_died and "killed" or f(c.task), f(c.cpu, 2), f(c.fast, 2)))
end
w("")
-- Targets (attached configurations).
local worst_p99, worst_max, worst_cpu, worst_fast = 0, 0, 0, 0
for _, r in ipairs(rows) do
  if r.mode == "attached" then
    worst_p99 = math.max(worst_p99, r.during.p99 or math.huge)
    worst_max = math.max(worst_max, r.during.max or math.huge)
  end
end
local by = {}
for _, c in ipairs(calls) do by[c.config .. "/" .. c.mode] = c end
for _, c in ipairs(calls) do
  if c.mode == "attached" then
    worst_cpu = math.max(worst_cpu, c.cpu or math.huge)
    local b = by[c.config .. "/blocking"]
    if b and b.fast and c.fast then worst_fast = math.max(worst_fast, c.fast - b.fast) end
  end
end
local function met(x, limit) return x <= limit and "yes" or "**no**" end
w("| target (every attached configuration) | measured (worst) | met? |")
w("|---|---:|---|")
w(("| plain requests during the call: p99 ≤ 10 ms | %s ms | %s |"):format(f(worst_p99), met(worst_p99, 10)))
w(("| plain requests during the call: max ≤ 25 ms | %s ms | %s |"):format(f(worst_max), met(worst_max, 25)))
w(("| event-loop CPU ≤ 5 ms per %d ms call | %s ms | %s |"):format(DELAY_MS, f(worst_cpu, 2), met(worst_cpu, 5)))
w(("| a fast call's added latency (attached − blocking median) ≤ 2 ms | %s ms | %s |")
  :format(f(worst_fast, 2), met(worst_fast, 2)))
w("")
w(NOTE)
w("<!-- hosts:end -->")
local section = table.concat(md, "\n") .. "\n"

local text = host.read_file(out_md)
local b, e = text:find("<!%-%- hosts:begin.-<!%-%- hosts:end %-%->\n?")
if b then
  text = text:sub(1, b - 1) .. section .. text:sub(e + 1)
else
  local t = text:find("\n## Targets", 1, true)
  if t then text = text:sub(1, t) .. section .. "\n" .. text:sub(t + 1) else text = text .. "\n" .. section end
end
local fh = assert(io.open(out_md, "wb"))
fh:write(text)
fh:close()
io.stderr:write("bench: hosts: wrote its section of ", out_md, "\n")
