--- lua-keyfactor side of the bench.  Prints one number per run (seconds,
-- or as stated) on stdout; exits non-zero on any failure.
--
--   kf.lua get      URL CA USER PASS N [http1]   N x kf:certificate(42)
--   kf.lua deploy   URL CA USER PASS N           N x kf:deploy{...}
--   kf.lua parallel URL CA USER PASS N C         kf:parallel, N x kf:certificate, concurrency C
--   kf.lua core     URL CA USER PASS N C [decode]
--                   the C core alone, from a plain loop: N x session:start/step
--                   (at most C in flight), each body handed over as a string
--                   and dropped (as the discarding C peer drops it) or, with
--                   decode, decoded and kept (request:result(true), as the
--                   transport asks for them); no transport, no scheduler
--   kf.lua iterate  URL CA USER PASS PAGE [prefetch]
--                   every item of kf:certificates{page_size=PAGE}; prints
--                   "seconds items vmhwm_kib baseline_rss_kib"
--   kf.lua pagerss  FILE    loads the client, decodes FILE once as the
--                   transport does; prints "vmhwm_kib baseline_rss_kib"
--   kf.lua overhead CERTFILE DEPLOYFILE N
--                   the client's Lua path without a network (a stand-in
--                   session answers at once); prints "get_us deploy_us
--                   encode_us decode_us validate_us cjson_decode_us" per call
local keyfactor = require "keyfactor"

local mode = arg[1]
local clock = require("keyfactor.core").now

local STORES = {
  { StoreId = "5a4db0c5-0101-4e5a-9d00-000000000001" },
  { StoreId = "5a4db0c5-0104-4e5a-9d00-000000000004" },
}

local function status_kib(field)
  local f = assert(io.open("/proc/self/status"))
  local text = f:read("a")
  f:close()
  return tonumber(text:match(field .. ":%s*(%d+) kB"))
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function client(http1)
  return keyfactor.new {
    url = arg[2], ca_file = arg[3], username = arg[4], password = arg[5],
    retries = 0, http2 = not http1 or nil,
  }
end

local function die(err)
  io.stderr:write("kf.lua ", mode, ": ", tostring(err), "\n")
  os.exit(1)
end

if mode == "get" or mode == "deploy" then
  local n = assert(tonumber(arg[6]))
  local kf = client(arg[7] == "http1")
  local t0 = clock()
  if mode == "get" then
    for _ = 1, n do
      local cert, err = kf:certificate(42)
      if not cert then die(err) end
    end
  else
    for _ = 1, n do
      local r, err = kf:deploy { CertificateId = 42, Password = "", Stores = STORES }
      if not r then die(err) end
    end
  end
  print(string.format("%.6f", clock() - t0))
  kf:close()

elseif mode == "parallel" then
  local n, c = assert(tonumber(arg[6])), assert(tonumber(arg[7]))
  local kf = client()
  local fns = {}
  local function get(k) return k:certificate(42) end
  for i = 1, n do fns[i] = get end
  local t0 = clock()
  local values, errors = kf:parallel(fns, { concurrency = c, progress = false })
  local elapsed = clock() - t0
  for i = 1, n do
    if errors[i] or type(values[i]) ~= "table" then die(errors[i] or "no value") end
  end
  print(string.format("%.6f", elapsed))
  kf:close()

elseif mode == "core" then
  local n, c = assert(tonumber(arg[6])), assert(tonumber(arg[7]))
  local decode = arg[8] == "decode"   -- as the transport does: result(true) decodes the received bytes
  local kf = client()
  local session = kf.http.session
  local spec = { method = "GET", url = arg[2] .. "/Certificates/42" }
  local values, started, inflight = {}, 0, 0
  local t0 = clock()
  while #values < n do
    while inflight < c and started < n do
      session:start(spec)
      started, inflight = started + 1, inflight + 1
    end
    for _, request in ipairs(session:step(1)) do
      local status, body = request:result(decode)
      if status ~= 200 or body == nil then die("HTTP " .. tostring(status)) end
      values[#values + 1] = decode and body or true   -- decoded answers kept, bodies dropped
      inflight = inflight - 1
    end
  end
  print(string.format("%.6f", clock() - t0))
  kf:close()

elseif mode == "iterate" then
  local page = assert(tonumber(arg[6]))
  local kf = client()
  collectgarbage()
  local baseline = status_kib("VmRSS")
  local count = 0
  local t0 = clock()
  for cert in kf:certificates { page_size = page, prefetch = arg[7] == "prefetch" or nil } do
    if cert.Id == nil then die("item without Id") end
    count = count + 1
  end
  local elapsed = clock() - t0
  print(string.format("%.6f %d %d %d", elapsed, count, status_kib("VmHWM"), baseline))
  kf:close()

elseif mode == "pagerss" then
  local core = require "keyfactor.core"
  local kf = keyfactor.new { url = "https://127.0.0.1:1/KeyfactorAPI", username = "u", password = "p" }
  collectgarbage()
  local baseline = status_kib("VmRSS")
  local body = read_file(arg[2])            -- the response body, as the C core hands it over
  local page = assert(core.decode_json(body))
  assert(#page > 0)
  print(string.format("%d %d", status_kib("VmHWM"), baseline))
  kf:close()

elseif mode == "overhead" then
  local cjson = require "cjson"
  local core = require "keyfactor.core"
  local v = require "keyfactor.api.validate"
  local cert_body, deploy_body = read_file(arg[2]), read_file(arg[3])
  local n = assert(tonumber(arg[4]))
  local kf = keyfactor.new { url = "https://127.0.0.1:1/KeyfactorAPI", username = "u", password = "p" }
  -- A stand-in for the C session: every request is answered at once.
  local HEADERS = { ["content-type"] = "application/json" }
  local answer = cert_body
  local request = {}
  function request.result(_, decoded)   -- as the core's: result(true) decodes a 2xx body
    if decoded then return 200, core.decode_json(answer), 0.0001 end
    return 200, answer, 0.0001
  end
  function request.headers() return HEADERS end
  local fake = {}
  function fake.start() return request end
  function fake.wait() end
  function fake.step() end
  function fake.closed() return false end
  kf.http.session = fake
  local function per_call(fn)
    fn() -- warm-up
    collectgarbage()
    local t0 = clock()
    for _ = 1, n do fn() end
    return (clock() - t0) / n * 1e6
  end
  local get_us = per_call(function() assert(kf:certificate(42)) end)
  answer = deploy_body
  local deploy_us = per_call(function()
    assert(kf:deploy { CertificateId = 42, Password = "", Stores = STORES })
  end)
  local req = { CertificateId = 42, Password = "", Stores = STORES }
  local encode_us = per_call(function() core.encode_json(req) end)
  local decode_us = per_call(function() core.decode_json(cert_body) end)
  local DEPLOY = v.record {
    Stores = v.array(v.record({ StoreId = v.guid }, { "StoreId" }), { min = 1 }),
    Password = v.string, CertificateId = v.integer,
  }
  local validate_us = per_call(function() v.check("kf:deploy", DEPLOY, req) end)
  local cjson_us = per_call(function() cjson.decode(cert_body) end)
  print(string.format("%.3f %.3f %.3f %.3f %.3f %.3f", get_us, deploy_us, encode_us, decode_us, validate_us, cjson_us))
  kf.http.session = kf.session
  kf:close()
else
  io.stderr:write("kf.lua: unknown mode ", tostring(mode), "\n")
  os.exit(2)
end
