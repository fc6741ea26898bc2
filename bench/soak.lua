-- Soak: 100,000 requests (mixed GET/POST, a fifth of them failing, some
-- in parallel batches) against a local sandbox, sampling this process's
-- RSS and open file descriptors.  The goal is flat: under 1 MiB of RSS
-- growth after warm-up, and a constant fd count.
--
--   make soak                      (or: lua5.4 bench/soak.lua [requests])
local keyfactor = require "keyfactor"
local core = require "keyfactor.core"
local sandbox = require "keyfactor.sandbox"

local TOTAL = tonumber(arg[1] or "100000")
local SAMPLE_EVERY = math.max(1, TOTAL // 20)
local WARMUP = TOTAL // 10

local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local kib = line:match("^VmRSS:%s+(%d+)")
    if kib then return tonumber(kib) end
  end
end

local function open_fds()
  local p = io.popen("ls /proc/" .. io.open("/proc/self/stat"):read("*n") .. "/fd 2>/dev/null | wc -l")
  local n = p:read("*n")
  p:close()
  return n
end

local sb = sandbox.start { job_delay = 0.05 }
local kf = keyfactor.new { url = sb.url, ca_file = sb.ca_file, username = sb.username,
                           password = sb.password, retries = 0 }
local cert = assert(kf:enroll { Template = "WebServer", Subject = "CN=soak.example.com", format = "STORE" })
local id = cert.CertificateInformation.KeyfactorId

-- One step of the mix; returns true when the call failed (as some must).
local function step(i)
  local kind = i % 10
  if kind < 4 then return kf:certificate(id) == nil
  elseif kind < 6 then return kf:certificate(900000 + i % 7) == nil         -- 404
  elseif kind < 8 then return kf:revoke { CertificateIds = { 900000 }, Comment = "soak" } == nil  -- 404
  else return kf:deny({ 900000 + i % 5 }, "soak") == nil                     -- 200, in Failures
  end
end

local done, failed, samples = 0, 0, {}
local started = core.now()
local function sample()
  collectgarbage("collect")
  samples[#samples + 1] = { done = done, rss = rss_kib(), fds = open_fds(), lua_kib = collectgarbage("count") }
end
sample()
while done < TOTAL do
  if done % 1000 == 500 then         -- a parallel batch now and then
    local fns = {}
    for j = 1, 50 do fns[j] = function() return not step(done + j) or nil, "failed" end end
    local values = kf:parallel(fns, { concurrency = 8, progress = false })
    for j = 1, 50 do if not values[j] then failed = failed + 1 end end
    done = done + 50
  else
    if step(done) then failed = failed + 1 end
    done = done + 1
  end
  if done % SAMPLE_EVERY < 1 or done >= TOTAL then sample() end
end
local seconds = core.now() - started
kf:close()
sb:stop()

print(("%d requests (%d failed as intended) in %.1fs, %.0f req/s"):format(done, failed, seconds, done / seconds))
print("requests      RSS KiB   fds   Lua heap KiB")
for _, s in ipairs(samples) do
  print(("%8d  %10d  %4d  %12.0f"):format(s.done, s.rss, s.fds, s.lua_kib))
end
local warm
for _, s in ipairs(samples) do if s.done >= WARMUP then warm = s; break end end
local last = samples[#samples]
local growth = last.rss - warm.rss
print(("RSS growth after warm-up (%d requests): %d KiB; fds %d -> %d"):format(warm.done, growth, warm.fds, last.fds))
local flat = growth < 1024 and last.fds == warm.fds
print(flat and "soak: flat" or "soak: NOT flat")
os.exit(flat and 0 or 1)
