-- keyfactor.ngx inside real nginx with lua-nginx-module (Debian's
-- libnginx-mod-http-lua, LuaJIT): calls from content handlers, timers and
-- kf:parallel yield to nginx; set_by_lua blocks and says so once; a client
-- created in init_by_lua (in the master, which also makes a call) is used by
-- every worker, each with its own connections.  Workers run as nobody: the
-- app preloads its modules in the master.  The app is spec/hosts/app/nginx_app.lua.
local fixture = require "support.fixture"
local host = require "hosts.host"
local behaviours = require "hosts.behaviours"

local function start(sb, opts)
  host.build("luajit")
  local o = { url = sb.url, ca_file = sb.ca_file, username = sb.username, password = sb.password }
  for k, v in pairs(opts or {}) do o[k] = v end
  return host.nginx(o)
end

describe("keyfactor.ngx in nginx (1 worker)", function()
  behaviours.define(start, {
    handler = "a content handler", task = "a timer", fallback = "set_by_lua",
    log_pattern = "keyfactor: a call made in the set phase",
  })
end)

describe("keyfactor.ngx: a client created in the master, used by 2 workers", function()
  local sb, kf, h, ids
  fixture.live(function(s, k)
    sb, kf = s, k
    ids = {}
    for i = 1, 4 do ids[i] = fixture.enroll(kf, "fork" .. i .. ".example.com").CertificateInformation.KeyfactorId end
    -- The master calls before forking: its pool holds a connection the workers inherit.
    h = start(sb, { workers = 2, reuseport = true, warm_id = ids[1] })
  end)
  lazy_teardown(function() if h then h:stop() end end)

  it("gives each worker its own answers", function()
    assert.equal(1, #fixture.requests(sb, "GET", "/Certificates/" .. ids[1]), "the master made no call")
    local workers = host.children(h.pid)
    assert.equal(2, #workers)
    -- Rounds of concurrent calls, each for one of four certificates, spread
    -- over both workers by reuseport: every answer must be for its own request.
    local seen = {}
    for _ = 1, 5 do
      local pending = {}
      for i = 1, 16 do
        local id = ids[(i % 4) + 1]
        pending[i] = { id = id, sock = host.begin(h.port, "/call?id=" .. id) }
      end
      for _, p in ipairs(pending) do
        local status, body = host.finish(p.sock)
        assert.equal(200, status)
        assert.equal(tostring(p.id), body:match("^id=(%d+)"), body)
        seen[tonumber(body:match("pid=(%d+)"))] = true
      end
    end
    for _, pid in ipairs(workers) do assert.is_true(seen[pid], "worker " .. pid .. " answered nothing") end
    assert.is_nil(seen[h.pid], "the master answered")
  end)
end)
