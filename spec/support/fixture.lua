-- Shared set-up for the client specs: a live sandbox, clients for its
-- users, and PKI helpers (luaossl) to check what comes back.
local keyfactor = require "keyfactor"
local sandbox = require "keyfactor.sandbox"
local luassert = require "luassert"
local busted = require "busted"

local fixture = {}

fixture.WEB = 1              -- container ids of the sandbox seed
fixture.RESTRICTED = 2

--- True for an integer: a Lua integer on 5.3+ (where JSON ids must not
-- come back as floats), an integral number on LuaJIT (which has no subtype).
function fixture.is_integer(value)
  if math.type then return math.type(value) == "integer" end
  return type(value) == "number" and value == math.floor(value)
end

--- Starts a sandbox for one spec file (call in lazy_setup; stop in lazy_teardown).
function fixture.sandbox(opts)
  -- the sandbox always runs on Lua 5.4 (lua-http's home), whatever runs the specs
  local o = { port = 0, job_delay = 0.05, lua = "lua5.4" }
  for k, v in pairs(opts or {}) do o[k] = v end
  return sandbox.start(o)
end

--- For a describe block on a live sandbox: registers the lazy_setup that
-- starts a sandbox and an admin client (with `client_opts`) and hands both
-- to `use(sb, kf)` (which sets the block's locals and may prepare more), and
-- the lazy_teardown that closes them.
function fixture.live(use, client_opts)
  local sb, kf
  busted.lazy_setup(function()
    sb = fixture.sandbox()
    kf = fixture.client(sb, client_opts)
    use(sb, kf)
  end)
  busted.lazy_teardown(function()
    if kf then kf:close() end
    if sb then
      sb:stop()
      fixture.report_watchdog(sb)
    end
  end)
end

--- Copies the sandbox's watchdog reports (a request that held its event
-- loop, with the traceback) to stderr: the spec that met one may pass after
-- the hang-up, and the report is how the cause is found.
function fixture.report_watchdog(sb)
  local text = sb:log()
  local first = text:find("[^\n]*watchdog: ")
  if first then io.stderr:write("\nsandbox watchdog report (", sb.log_file, "):\n", text:sub(first), "\n") end
end

--- A client for the sandbox's admin (or `overrides.username`/...).
function fixture.client(sb, overrides)
  local opts = { url = sb.url, ca_file = sb.ca_file, username = sb.username, password = sb.password }
  for k, v in pairs(overrides or {}) do opts[k] = v end
  if overrides and (overrides.token or overrides.oauth) then opts.username, opts.password = nil, nil end
  return keyfactor.new(opts)
end

function fixture.operator(sb, overrides)
  local o = { username = sb.operator_username, password = sb.operator_password }
  for k, v in pairs(overrides or {}) do o[k] = v end
  return fixture.client(sb, o)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local DECODE = {}
for i = 1, #B64 do DECODE[B64:byte(i)] = i - 1 end

function fixture.base64_decode(s)
  s = s:gsub("[^%w%+/]", "")
  local out, bits, nbits = {}, 0, 0
  for i = 1, #s do
    -- arithmetic, not bit operators: the specs also run on LuaJIT
    bits = (bits * 64 + DECODE[s:byte(i)]) % 16777216
    nbits = nbits + 6
    if nbits >= 8 then
      nbits = nbits - 8
      out[#out + 1] = string.char(math.floor(bits / 2 ^ nbits) % 256)
    end
  end
  return table.concat(out)
end

--- key, certificate, chain of a base64 PKCS#12 blob (errors if the password is wrong).
function fixture.open_pkcs12(blob, password)
  local pkcs12 = require "openssl.pkcs12"
  return pkcs12.parse(fixture.base64_decode(blob), password)
end

function fixture.ca_certificate(sb)
  local x509 = require "openssl.x509"
  local f = assert(io.open(sb.ca_file, "rb"))
  local pem = f:read("a")
  f:close()
  return x509.new(pem, "PEM")
end

--- pairs() that honours __pairs on every runtime (LuaJIT's pairs ignores
-- it, and luaossl's names and altnames iterate through it).
function fixture.each(object)
  local mt = getmetatable(object)
  if type(mt) == "table" and mt.__pairs then return mt.__pairs(object) end
  return pairs(object)
end

--- The subjectAltName DNS names of a luaossl certificate, sorted.
function fixture.dns_names(cert)
  local names = {}
  local alt = cert:getSubjectAlt()
  if alt then
    for kind, value in fixture.each(alt) do
      if kind == "DNS" then names[#names + 1] = value end
    end
  end
  table.sort(names)
  return names
end

--- A new EC P-256 key and a CSR for `cn` with DNS SANs, both luaossl objects.
function fixture.csr(cn, dns)
  local pkey = require "openssl.pkey"
  local csr_mod = require "openssl.x509.csr"
  local name = require "openssl.x509.name"
  local altname = require "openssl.x509.altname"
  local key = pkey.new { type = "EC", curve = "prime256v1" }
  local req = csr_mod.new()
  req:setVersion(1)
  local subject = name.new()
  subject:add("CN", cn)
  req:setSubject(subject)
  if dns then
    local alt = altname.new()
    for _, d in ipairs(dns) do alt:add("DNS", d) end
    req:setSubjectAlt(alt)
  end
  req:setPublicKey(key)
  req:sign(key)
  return key, req
end

--- Store ids of a container, optionally of one store type short name.
function fixture.store_ids(kf, container_id, type_short_name)
  local type_id
  if type_short_name then
    for _, t in ipairs(assert(kf:store_types())) do
      if t.ShortName == type_short_name then type_id = t.StoreType end
    end
  end
  local ids = {}
  for store in kf:stores { query = "ContainerId -eq " .. container_id } do
    if not type_id or store.CertStoreType == type_id then ids[#ids + 1] = store.Id end
  end
  return ids
end

--- The id of the newest request in the sandbox's log (0 when empty): a mark
-- for fixture.seen_since.
function fixture.log_mark(sb)
  local log = sb:requests()
  return #log > 0 and log[#log].id or 0
end

--- How many requests for `method` and `path` (the full path, any case) the
-- sandbox logged after `mark`: proof that a POST arrived once.
function fixture.seen_since(sb, mark, method, path)
  local n = 0
  for _, r in ipairs(sb:requests()) do
    if r.id > mark and r.method == method and r.path:lower() == path:lower() then n = n + 1 end
  end
  return n
end

--- Requests of the sandbox log matching method and a path suffix.
function fixture.requests(sb, method, path_suffix)
  local found = {}
  for _, r in ipairs(sb:requests()) do
    if r.method == method and r.path:sub(-#path_suffix):lower() == path_suffix:lower() then
      found[#found + 1] = r
    end
  end
  return found
end

--- A fresh issued certificate (PFX enrollment) for `cn`.
function fixture.enroll(kf, cn, extra)
  local req = { Template = "WebServer", Subject = "CN=" .. cn, Password = "pfx-pass-1",
                SANs = { dns = { cn } } }
  for k, v in pairs(extra or {}) do req[k] = v end
  return assert(kf:enroll(req))
end

--- A luaossl certificate from PEM text.
function fixture.x509(pem)
  local x509 = require "openssl.x509"
  return x509.new(pem, "PEM")
end

--- Asserts that `cert` was issued by the sandbox CA: the issuer name equals
-- the CA's subject, and the signature verifies against a store holding only
-- the CA.
function fixture.assert_issued_by_ca(sb, cert)
  local ca = fixture.ca_certificate(sb)
  luassert.are.equal(tostring(ca:getSubject()), tostring(cert:getIssuer()))
  local store = require("openssl.x509.store").new()
  store:add(ca)
  local ok = store:verify(cert)
  luassert.is_true(ok, "certificate does not verify against the sandbox CA")
end

--- The common name of a luaossl certificate's subject.
function fixture.cn(cert)
  for k, v in fixture.each(cert:getSubject()) do
    if k == "CN" then return v end
  end
end

--- Runs `fn` expecting a Lua error; asserts that its message contains
-- every string of `...` (plain text); returns the message.
function fixture.raises(fn, ...)
  local ok, err = pcall(fn)
  luassert.is_false(ok, "expected an error, the call returned normally")
  local message = tostring(err)
  for i = 1, select("#", ...) do
    local text = select(i, ...)
    assert(message:find(text, 1, true), string.format("error %q does not contain %q", message, text))
  end
  return message
end

--- Number of API requests in the sandbox log (to prove nothing was sent).
function fixture.request_count(sb)
  return #sb:requests()
end

--- Polls `fn` every `interval` seconds (default 0.05) until it returns a
-- truthy value or `timeout` seconds (default 5) pass; returns its last value.
function fixture.poll(fn, timeout, interval)
  local core = require "keyfactor.core"
  local deadline = core.now() + (timeout or 5)
  while true do
    local value = fn()
    if value or core.now() > deadline then return value end
    core.sleep(interval or 0.05)
  end
end

--- Unique names for one spec run, so specs sharing a sandbox never collide.
local serial = 0
function fixture.unique(prefix)
  serial = serial + 1
  return string.format("%s-%d-%d.example.com", prefix, os.time() % 100000, serial)
end

--- Output (stdout and stderr) and exit status of a shell command (the status
-- is echoed, as LuaJIT's pipe:close() does not return it).
function fixture.sh(command)
  local p = assert(io.popen("{ " .. command .. "; } 2>&1; echo \"exit:$?\""))
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.-)exit:(%d+)%s*$")
  return body, tonumber(code)
end

--- The array of items an iterator yields.
function fixture.collect(iterator)
  local items = {}
  for item in iterator do items[#items + 1] = item end
  return items
end

return fixture
