--- The sandbox side of the fan-out scenario: 200 calls to the sandbox with
-- 50 ms of latency injected on every GET /Certificates/{id} (sb:fault
-- delay_ms; nginx cannot add latency), sequential versus kf:parallel at
-- concurrency 16 and 64, and the C loops at the same settings.
--
--   lua5.4 bench/sandbox.lua BUILD_DIR N RUNS
-- BUILD_DIR holds the compiled C loops (seq, multi).  Prints one line per
-- run: scenario TAB tool TAB calls TAB seconds TAB s
local sandbox = require "keyfactor.sandbox"
local keyfactor = require "keyfactor"
local clock = require("keyfactor.core").now

local bin, n, runs = arg[1], assert(tonumber(arg[2])), assert(tonumber(arg[3]))

local sb = sandbox.start { port = 0, job_delay = 0.05 }
local ok, err = pcall(function()
  local kf = keyfactor.new { url = sb.url, ca_file = sb.ca_file, username = sb.username,
                             password = sb.password, retries = 0 }
  local r = assert(kf:enroll { Template = "WebServer", Subject = "CN=bench.example.com", format = "STORE" })
  local id = assert(r.CertificateInformation.KeyfactorId)
  local path = "/KeyfactorAPI/Certificates/" .. id
  local url = sb.url .. "/Certificates/" .. id
  sb:fault { method = "GET", path = path, times = 100000, delay_ms = 50 }

  local function emit(tool, seconds)
    io.write(string.format("sandbox50\t%s\t%d\t%.6f\ts\n", tool, n, seconds))
    io.flush()
  end
  local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
  local function c_loop(prog, extra)
    local cmd = table.concat({ shell_quote(bin .. "/" .. prog), shell_quote(url), shell_quote(sb.ca_file),
      shell_quote(sb.username .. ":" .. sb.password), tostring(n), extra or "" }, " ") .. " 2>/dev/null"
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    local fine = p:close()
    return fine and tonumber(out) or error("C loop failed: " .. cmd)
  end
  local function get(k) return k:certificate(id) end
  local fns = {}
  for i = 1, n do fns[i] = get end

  for _ = 1, runs do
    local t0 = clock()
    for _ = 1, n do assert(kf:certificate(id)) end
    emit("kf seq", clock() - t0)
    emit("C seq", c_loop("seq"))
    for _, c in ipairs { 16, 64 } do
      t0 = clock()
      local values, errors = kf:parallel(fns, { concurrency = c, progress = false })
      local elapsed = clock() - t0
      for i = 1, n do
        if errors[i] or type(values[i]) ~= "table" then error(errors[i] or "no value") end
      end
      emit("kf c" .. c, elapsed)
      emit("C multi c" .. c, c_loop("multi", tostring(c)))
    end
  end
  kf:close()
end)
sb:stop()
if not ok then
  io.stderr:write("sandbox.lua: ", tostring(err), "\n")
  os.exit(1)
end
