-- The fleet's Redis connection against real redis-servers (127.0.0.1, free
-- ports, no persistence): a worker that outlives a restart and a FLUSHALL,
-- AUTH with requirepass and with an ACL user, a database number, TLS, and
-- the options and variables of bin/keyfactor-fleet that carry them (the
-- password never on the command line, never in a message).
local fixture = require "support.fixture"
local pki = require "keyfactor.pki"
local redis = require "support.redis"
local socket = require "socket"

local sh = fixture.sh

local ROOT = sh("pwd"):match("^(.-)%s*$")
local PASSWORD, ACL_USER, ACL_PASSWORD = "req-pass-7f3e", "fleet", "acl-pass-91c2"

describe("fleet Redis connection", function()
  local sb, kf, fleet, connection, dir, keyenv
  local key = pki.key { type = "EC" }
  local servers = {}

  -- Starts a redis-server with extra arguments; returns its port.
  local function start_redis(name, extra, port)
    port = redis.start(dir, name, port, extra)
    servers[name] = port
    return port
  end
  local function stop_redis(name) redis.stop(dir, name) end
  local function cli(port, args) return sh(("redis-cli -p %d %s"):format(port, args)) end

  fixture.live(function(s, k)
    sb, kf = s, k
    fleet = require "keyfactor.fleet"
    connection = require "keyfactor.fleet.connection"
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    keyenv = ("KEYFACTOR_HOSTNAME=%s KEYFACTOR_API_PATH=KeyfactorAPI KEYFACTOR_USERNAME='%s' "
      .. "KEYFACTOR_PASSWORD=%s KEYFACTOR_CA_CERT=%s "
      .. "LUA_PATH='%s/lua/?.lua;%s/lua/?/init.lua;;' LUA_CPATH='%s/build/lua5.4/?.so;;' ")
      :format(sb.base, sb.username, sb.password, sb.ca_file, ROOT, ROOT, ROOT)
  end)

  lazy_teardown(function()
    if dir then
      for name in pairs(servers) do stop_redis(name) end
      sh("rm -rf " .. dir)
    end
  end)

  local function enroll(n, prefix)
    local certs = {}
    for i = 1, n do
      local cn = fixture.unique(prefix .. i)
      local r = assert(kf:enroll { CSR = pki.csr { key = key, subject = "CN=" .. cn }, Template = "WebServer",
        format = "PEM" })
      certs[i] = { id = r.CertificateInformation.KeyfactorId, cn = cn }
    end
    return certs
  end

  -- Each of `certs` has its renewed mark (keyfactor.fleet.claim).
  local function renewed(certs)
    local claim = require "keyfactor.fleet.claim"
    for _, c in ipairs(certs) do
      local cert = kf:certificate(c.id, { includeMetadata = true })
      local mark = cert and claim.parse(cert.Metadata[claim.FIELD], c.id)
      if not (mark and mark.state == "renewed") then return false end
    end
    return true
  end

  local function query_for(certs)
    local parts = {}
    for i, c in ipairs(certs) do parts[i] = 'IssuedCN -eq "' .. c.cn .. '"' end
    return table.concat(parts, " OR ")
  end

  describe("a worker under a Redis that restarts or is flushed", function()
    it("work --forever connects again, makes its group again, and renews what the next schedule refills",
      function()
      local port = start_redis("restarting")
      assert(fixture.poll(function() return select(2, cli(port, "ping")) == 0 end, 10))
      local env = keyenv .. ("KF_REDIS_PORT=%d "):format(port)
      local out = dir .. "/worker.out"
      local pid = sh(("%s bin/keyfactor-fleet work --forever --max-seconds 90 --prefix survive --name w1 "
        .. "--lease 5 --settle 0.5 --reclaim-idle 1 >%s 2>&1 & echo $!"):format(env, out)):match("%d+")
      -- the worker is up and has made its group
      assert(fixture.poll(function()
        return sh(("redis-cli -p %d exists survive:jobs"):format(port)):match("1")
      end, 15), sh("cat " .. out))

      -- 1. Redis restarts, empty: the connection closes under the worker.
      stop_redis("restarting")
      socket.sleep(1.5)                           -- down for a while: failed attempts, backoff
      start_redis("restarting", nil, port)
      assert(fixture.poll(function() return select(2, cli(port, "ping")) == 0 end, 10))
      local first = enroll(2, "restart")
      local scheduled = sh(("%s bin/keyfactor-fleet schedule --prefix survive --days 400 --query '%s'")
        :format(env, query_for(first)))
      assert.truthy(scheduled:find("scheduled 2 certificates", 1, true), scheduled)
      assert(fixture.poll(function() return renewed(first) end, 30, 0.2), sh("cat " .. out))

      -- 2. FLUSHALL: the stream and the group vanish (NOGROUP).
      cli(port, "flushall")
      socket.sleep(0.5)
      local second = enroll(2, "flushed")
      scheduled = sh(("%s bin/keyfactor-fleet schedule --prefix survive --days 400 --query '%s'")
        :format(env, query_for(second)))
      assert.truthy(scheduled:find("scheduled 2 certificates", 1, true), scheduled)
      assert(fixture.poll(function() return renewed(second) end, 30, 0.2), sh("cat " .. out))

      local _, alive = sh("kill -0 " .. pid)
      sh("kill -TERM " .. pid)
      local log = sh("cat " .. out)
      assert.equal(0, alive, "the worker exited:\n" .. log)
      assert.truthy(log:find("connecting again", 1, true), log)
      -- the flush met the worker reading (UNBLOCKED) or between reads (NOGROUP)
      assert.truthy(log:find("NOGROUP", 1, true) or log:find("UNBLOCKED", 1, true), log)
      assert.truthy(log:find("Redis: connected again", 1, true), log)
      stop_redis("restarting")
    end)

    it("gives up at --max-seconds while Redis stays down", function()
      local port = start_redis("gone")
      assert(fixture.poll(function() return select(2, cli(port, "ping")) == 0 end, 10))
      local f = fleet.new { kf = kf, redis = { port = port }, prefix = "gone", name = "g1" }
      stop_redis("gone")
      local t0 = require("keyfactor.core").now()
      local ok, err = pcall(f.work, f, { max_seconds = 1.5, block = 0.1 })
      assert.is_false(ok)
      assert.truthy(connection.lost(err), tostring(err))
      assert.is_true(require("keyfactor.core").now() - t0 < 5)
    end)
  end)

  describe("AUTH and database number", function()
    local port
    lazy_setup(function()
      port = start_redis("auth", ("--requirepass %s --user %s on '>%s' '~*' '&*' '+@all'")
        :format(PASSWORD, ACL_USER, ACL_PASSWORD))
      assert(fixture.poll(function()
        return sh(("redis-cli -p %d -a %s --no-auth-warning ping"):format(port, PASSWORD)):find("PONG", 1, true)
      end, 10))
    end)

    it("logs in with requirepass's password and with an ACL user", function()
      local f = fleet.new { kf = kf, redis = { port = port, password = PASSWORD }, prefix = "auth1" }
      assert.equal(0, f:status().due)
      f = fleet.new { kf = kf, redis = { port = port, username = ACL_USER, password = ACL_PASSWORD }, prefix = "auth2" }
      assert.equal(0, f:status().due)
    end)

    it("a refusal names the server, never the password", function()
      local ok, err = pcall(fleet.new, { kf = kf, redis = { port = port, password = "wrong-" .. PASSWORD } })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("refused the credentials", 1, true), err)
      assert.is_nil(tostring(err):find(PASSWORD, 1, true), err)
      ok, err = pcall(fleet.new, { kf = kf, redis = { port = port, username = ACL_USER, password = "nope-123" } })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("of user " .. ACL_USER, 1, true), err)
      assert.is_nil(tostring(err):find("nope-123", 1, true), err)
      ok, err = pcall(fleet.new, { kf = kf, redis = { port = port } })    -- no password: NOAUTH
      assert.is_false(ok)
      assert.truthy(tostring(err):find("NOAUTH", 1, true), err)
    end)

    it("uses the database number given", function()
      local f = fleet.new { kf = kf, redis = { port = port, password = PASSWORD, db = 3 }, prefix = "dbnum" }
      f.db:zadd(f.keys.due, 1, "42")
      local function exists(db)
        return sh(("redis-cli -p %d -a %s --no-auth-warning -n %d exists dbnum:due"):format(port, PASSWORD, db))
          :match("%d")
      end
      assert.equal("1", exists(3))
      assert.equal("0", exists(0))
    end)

    it("checks its settings with errors naming the field", function()
      for _, case in ipairs {
        { { port = 70000 }, "opts.redis.port must be a port number" },
        { { db = -1 }, "opts.redis.db must not be negative" },
        { { username = "u" }, "opts.redis.username needs opts.redis.password" },
        { { hostt = "x" }, "opts.redis.hostt is not a known field (did you mean host?)" },
        { { tls = { cert_file = "c.pem" } }, "cert_file and opts.redis.tls.key_file go together" },
      } do
        local message = fixture.raises(function() fleet.new { kf = kf, redis = case[1] } end, case[2])
        assert.truthy(message:find("redis_spec.lua:%d+: keyfactor.fleet.new"), message)   -- at the caller's line
      end
    end)

    it("bin/keyfactor-fleet: the password from KF_REDIS_PASSWORD or a file, never from argv", function()
      local env = keyenv .. ("KF_REDIS_PORT=%d "):format(port)
      local out, code = sh(("%s KF_REDIS_PASSWORD=%s bin/keyfactor-fleet status --prefix binauth 2>&1")
        :format(env, PASSWORD))
      assert.equal(0, code, out)
      assert.truthy(out:find("due 0", 1, true), out)
      local file = dir .. "/redis-password"
      local f = assert(io.open(file, "w"))
      f:write(ACL_PASSWORD, "\n")
      f:close()
      out, code = sh(("%s bin/keyfactor-fleet status --prefix binauth --redis-username %s --redis-password-file %s "
        .. "--redis-db 2 2>&1"):format(env, ACL_USER, file))
      assert.equal(0, code, out)
      out, code = sh(("%s KF_REDIS_PASSWORD=wrong-%s bin/keyfactor-fleet status 2>&1"):format(env, PASSWORD))
      assert.equal(1, code, out)
      assert.truthy(out:find("refused the credentials", 1, true), out)
      assert.is_nil(out:find(PASSWORD, 1, true), out)
      out, code = sh(env .. "bin/keyfactor-fleet status --redis-password x 2>&1")
      assert.equal(2, code, out)
      assert.truthy(out:find("--redis-password is not taken", 1, true), out)
      out = sh(env .. "bin/keyfactor-fleet --help")
      for _, option in ipairs { "--redis-host", "--redis-port", "--redis-db", "--redis-username",
          "--redis-password-file", "KF_REDIS_PASSWORD", "--redis-tls", "--redis-ca-cert" } do
        assert.truthy(out:find(option, 1, true), option)
      end
    end)
  end)

  describe("TLS", function()
    local port, mtls_port, tls_dir
    lazy_setup(function()
      tls_dir = dir .. "/tls"
      -- a CA, a server certificate for 127.0.0.1 and localhost, a client certificate
      local _, code = sh(table.concat({
        "mkdir -p " .. tls_dir, "cd " .. tls_dir,
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=FleetTestCA "
          .. "-keyout ca.key -out ca.pem",
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=redis -keyout server.key "
          .. "-out server.csr",
        "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost' > san.ext",
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext "
          .. "-out server.pem",
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=worker -keyout client.key "
          .. "-out client.csr",
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out client.pem",
      }, " && ") .. " 2>&1")
      assert.equal(0, code)
      local tls = ("--tls-cert-file %s/server.pem --tls-key-file %s/server.key --tls-ca-cert-file %s/ca.pem")
        :format(tls_dir, tls_dir, tls_dir)
      port = redis.free_port()
      start_redis("tls", ("--tls-port %d %s --tls-auth-clients no"):format(port, tls), redis.free_port())
      mtls_port = redis.free_port()
      start_redis("mtls", ("--tls-port %d %s --tls-auth-clients yes"):format(mtls_port, tls), redis.free_port())
      assert(fixture.poll(function()
        return select(2, sh(("redis-cli --tls --cacert %s/ca.pem -p %d ping"):format(tls_dir, port))) == 0
      end, 10))
    end)

    it("connects over TLS, checking the server's certificate and name", function()
      local f = fleet.new { kf = kf, redis = { port = port, tls = { ca_file = tls_dir .. "/ca.pem" } }, prefix = "tls" }
      f.db:zadd(f.keys.due, 1, "7")
      assert.equal(1, f:status().due)
      f = fleet.new { kf = kf, redis = { host = "localhost", port = port, tls = { ca_file = tls_dir .. "/ca.pem" } },
        prefix = "tls" }
      assert.equal(1, f:status().due)
    end)

    it("refuses a server whose certificate it cannot trust or whose name does not match", function()
      local ok, err = pcall(fleet.new, { kf = kf, redis = { port = port, tls = true } })   -- the system's CAs
      assert.is_false(ok)
      assert.truthy(tostring(err):find("TLS handshake", 1, true), err)
      ok, err = pcall(fleet.new, { kf = kf, redis = { port = port,
        tls = { ca_file = tls_dir .. "/ca.pem", server_name = "redis.example.com" } } })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("not redis.example.com", 1, true), err)
      ok = pcall(fleet.new, { kf = kf, redis = { port = port } })   -- plain text to a TLS port
      assert.is_false(ok)
    end)

    it("presents a client certificate when the server wants one (bin/keyfactor-fleet too)", function()
      local ca = tls_dir .. "/ca.pem"
      local ok, err = pcall(fleet.new, { kf = kf, redis = { port = mtls_port, tls = { ca_file = ca } } })
      assert.is_false(ok, "a server wanting client certificates let us in without one")
      local f = fleet.new { kf = kf, prefix = "mtls", redis = { port = mtls_port, tls = { ca_file = ca,
        cert_file = tls_dir .. "/client.pem", key_file = tls_dir .. "/client.key" } } }
      assert.equal(0, f:status().due, err)
      local out, code = sh(("%s KF_REDIS_PORT=%d KF_REDIS_TLS=1 bin/keyfactor-fleet status --prefix mtls "
        .. "--redis-ca-cert %s/ca.pem --redis-cert %s/client.pem --redis-key %s/client.key 2>&1")
        :format(keyenv, mtls_port, tls_dir, tls_dir, tls_dir))
      assert.equal(0, code, out)
      assert.truthy(out:find("due 0", 1, true), out)
    end)
  end)
end)
