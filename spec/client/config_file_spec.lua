-- kfutil's configuration file ($HOME/.keyfactor/command_config.json, named
-- profiles) and its KEYFACTOR_PORT / KEYFACTOR_CLIENT_TIMEOUT, against a live
-- sandbox: a kfutil user's `keyfactor status` works with no new setting, the
-- environment overrides the file field by field, secrets in the file never
-- show in an error, and a file others may read is warned about once.
local fixture = require "support.fixture"
local keyfactor = require "keyfactor"
local core = require "keyfactor.core"

local function write(path, text, mode)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  assert(os.execute(string.format("chmod %s '%s'", mode or "600", path)))
end

describe("kfutil's configuration file", function()
  local sb, home, host, port

  lazy_setup(function()
    sb = fixture.sandbox()
    host, port = sb.base:match("^https://([^:/]+):(%d+)")
    home = os.tmpname()
    os.remove(home)
    assert(os.execute("mkdir -m 700 " .. home .. " && mkdir -m 700 " .. home .. "/.keyfactor"))
  end)
  lazy_teardown(function()
    if sb then sb:stop() end
    if home then os.execute("rm -rf " .. home) end
  end)

  -- the file kfutil writes: {"servers": {PROFILE: Server}}
  local function config(servers)
    return core.encode_json { servers = servers }
  end
  local function basic(extra)
    local s = { host = host, port = tonumber(port), username = "admin", domain = "SANDBOX",
                password = sb.password, ca_cert_path = sb.ca_file }
    for k, v in pairs(extra or {}) do s[k] = v end
    return s
  end
  local default_file = function() return home .. "/.keyfactor/command_config.json" end

  it("gives a kfutil user a working `keyfactor status` with no new setting", function()
    write(default_file(), config { default = basic() })
    local out, code = fixture.sh("env -i PATH=\"$PATH\" HOME=" .. home .. " bin/keyfactor status")
    assert.are.equal(0, code, out)
    assert.are.equal(sb.url, out:match("^ok: (%S+)"), out)
    assert.is_nil(out:find("warning", 1, true), out)
  end)

  it("takes the profile and the file named by KEYFACTOR_AUTH_CONFIG_PROFILE / _FILE (OAuth fields)", function()
    local path = home .. "/elsewhere.json"
    write(path, config {
      default = basic { password = "wrong-password" },
      lab = { host = host, port = tonumber(port), client_id = sb.client_id, client_secret = sb.client_secret,
              token_url = sb.token_url, scopes = { "a", "b" }, ca_cert_path = sb.ca_file },
    })
    local kf = keyfactor.from_env { env = { HOME = "/nonexistent", KEYFACTOR_AUTH_CONFIG_FILE = path,
                                            KEYFACTOR_AUTH_CONFIG_PROFILE = "lab" } }
    assert.are.equal(sb.url, kf.url)
    assert.matches("oauth", tostring(kf))
    assert(kf:status())
    kf:close()
  end)

  it("lets each environment variable override its field of the file", function()
    write(default_file(), config { default = basic { password = "wrong-password" } })
    local kf = keyfactor.from_env { env = { HOME = home, KEYFACTOR_PASSWORD = sb.password } }
    assert(kf:status())
    kf:close()
    -- KEYFACTOR_PORT is read: port 1 is refused, so the file's port was overridden
    kf = keyfactor.from_env { env = { HOME = home, KEYFACTOR_PASSWORD = sb.password, KEYFACTOR_PORT = "1" },
                              retries = 0 }
    assert.are.equal("https://" .. host .. ":1/KeyfactorAPI", kf.url)
    local _, err = kf:status()
    assert.are.equal("transport", err.kind)
    kf:close()
  end)

  it("reads KEYFACTOR_PORT and KEYFACTOR_CLIENT_TIMEOUT without a file", function()
    local env = { HOME = "/nonexistent", KEYFACTOR_HOSTNAME = host, KEYFACTOR_PORT = port,
                  KEYFACTOR_USERNAME = sb.username, KEYFACTOR_PASSWORD = sb.password,
                  KEYFACTOR_CA_CERT = sb.ca_file, KEYFACTOR_CLIENT_TIMEOUT = "1" }
    local kf = keyfactor.from_env { env = env, retries = 0 }
    assert.are.equal(sb.url, kf.url)
    assert(kf:status())
    -- an answer 3 s late is a timeout only with the 1 s of KEYFACTOR_CLIENT_TIMEOUT (the default is 60 s)
    sb:fault { method = "GET", path = "/KeyfactorAPI/Status/Endpoints", delay_ms = 3000, times = 1 }
    local _, err = kf:status()
    assert.are.equal("timeout", err.kind)
    kf:close()
    sb:clear_faults()
    env.KEYFACTOR_CLIENT_TIMEOUT = "soon"
    fixture.raises(function() keyfactor.from_env { env = env } end, "KEYFACTOR_CLIENT_TIMEOUT", "soon")
    env.KEYFACTOR_CLIENT_TIMEOUT, env.KEYFACTOR_PORT = nil, "99999"
    fixture.raises(function() keyfactor.from_env { env = env } end, "KEYFACTOR_PORT", "99999")
  end)

  it("never shows the file's text in an error, and names what is missing", function()
    local path = home .. "/broken.json"
    write(path, '{"servers": {"default": {"password": "s3cret-in-file", ')
    local message = fixture.raises(function()
      keyfactor.from_env { env = { KEYFACTOR_AUTH_CONFIG_FILE = path } }
    end, "keyfactor.from_env", path, "not a kfutil configuration")
    assert.is_nil(message:find("s3cret", 1, true), message)
    write(path, config { default = basic { password = "s3cret-in-file" } })
    message = fixture.raises(function()
      keyfactor.from_env { env = { KEYFACTOR_AUTH_CONFIG_FILE = path, KEYFACTOR_AUTH_CONFIG_PROFILE = "prod" } }
    end, "KEYFACTOR_AUTH_CONFIG_PROFILE", '"prod"', path)
    assert.is_nil(message:find("s3cret", 1, true), message)
    fixture.raises(function()
      keyfactor.from_env { env = { KEYFACTOR_AUTH_CONFIG_FILE = home .. "/none.json" } }
    end, "KEYFACTOR_AUTH_CONFIG_FILE", home .. "/none.json")
  end)

  it("warns once when the file is readable by group or others, never quoting it", function()
    local path = home .. "/open.json"
    write(path, config { default = basic() }, "644")
    local warnings = {}
    local function warn(message) warnings[#warnings + 1] = message end
    for _ = 1, 2 do
      local kf = keyfactor.from_env { env = { KEYFACTOR_AUTH_CONFIG_FILE = path }, warn = warn }
      assert(kf:status())
      kf:close()
    end
    assert.are.equal(1, #warnings)
    assert.truthy(warnings[1]:find(path, 1, true) and warnings[1]:find("0644", 1, true), warnings[1])
    assert.is_nil(warnings[1]:find(sb.password, 1, true))
    -- the command line says it on stderr
    write(default_file(), config { default = basic() }, "640")
    local out, code = fixture.sh("env -i PATH=\"$PATH\" HOME=" .. home .. " bin/keyfactor status 2>&1 >/dev/null")
    assert.are.equal(0, code, out)
    assert.matches("keyfactor: warning: .*command_config.json.*0640.*chmod 600", out)
  end)
end)
