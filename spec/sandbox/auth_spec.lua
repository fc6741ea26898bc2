-- Authentication and Keyfactor headers: Basic (three username forms),
-- OAuth2 client credentials and bearer tokens, expiry, 401/400 answers.
local sandbox = require "keyfactor.sandbox"

describe("sandbox auth", function()
  local sb

  lazy_setup(function() sb = sandbox.start{ port = 0, token_lifetime = 2 } end)
  lazy_teardown(function() if sb then sb:stop() end end)

  local function status_of(opts)
    return (sb:http("GET", "/Status/Endpoints", opts))
  end

  local function token(form, basic)
    local opts = { auth = "none", requested_with = false, body = form,
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } }
    if basic then opts.auth = basic end
    return sb:http("POST", "/oauth2/token", opts)
  end

  it("exposes the pinned credentials", function()
    assert.equals("SANDBOX\\admin", sb.username)
    assert.equals("sandbox-admin", sb.password)
    assert.equals("SANDBOX\\operator", sb.operator_username)
    assert.equals("sandbox-operator", sb.operator_password)
    assert.equals("sandbox-client", sb.client_id)
    assert.equals("sandbox-secret", sb.client_secret)
    assert.equals(sb.base .. "/oauth2/token", sb.token_url)
    assert.matches("^https://127%.0%.0%.1:%d+/KeyfactorAPI$", sb.url)
  end)

  it("answers /Status/Endpoints with the product version (Command 25.1 by default)", function()
    local status, body, headers = sb:http("GET", "/Status/Endpoints", { headers = { Accept = "*/*" } })
    assert.equals(200, status)
    assert.equals("25.1.1.0", headers["x-keyfactor-product-version"])
    assert.equals("string", type(body[1]))
  end)

  it("accepts the three username forms", function()
    for _, user in ipairs{ "SANDBOX\\admin", "admin@SANDBOX", "admin@sandbox", "admin", "sandbox\\operator",
      "operator" } do
      local password = user:lower():find("operator") and "sandbox-operator" or "sandbox-admin"
      assert.equals(200, status_of{ auth = { user, password } }, user)
    end
  end)

  it("answers 401 with WWW-Authenticate without or with wrong credentials", function()
    for _, a in ipairs{ "none", { "SANDBOX\\admin", "wrong" }, { "OTHER\\admin", "sandbox-admin" },
      { "nobody", "x" }, { token = "not-a-token" } } do
      local status, body, headers = sb:http("GET", "/Status/Endpoints", { auth = a })
      assert.equals(401, status)
      assert.equals('Basic realm="Keyfactor"', headers["www-authenticate"])
      assert.equals("string", type(body.Message))
    end
  end)

  it("wants x-keyfactor-requested-with", function()
    local status, body = sb:http("GET", "/Status/Endpoints", { requested_with = false })
    assert.equals(400, status)
    assert.matches("x%-keyfactor%-requested%-with", body.Message)
    assert.matches("^0x%x+$", body.ErrorCode)
  end)

  it("issues bearer tokens for client credentials in the form or in Basic", function()
    local status, body = token("grant_type=client_credentials&client_id=sandbox-client&client_secret=sandbox-secret")
    assert.equals(200, status)
    assert.equals("Bearer", body.token_type)
    assert.equals(2, body.expires_in)
    assert.equals(200, status_of{ auth = { token = body.access_token } })
    local status2, body2 = token("grant_type=client_credentials&scope=a+b", { "sandbox-client", "sandbox-secret" })
    assert.equals(200, status2)
    -- a bearer token acts as admin
    assert.equals(200, (sb:http("GET", "/Workflow/Certificates/Pending", { auth = { token = body2.access_token } })))
  end)

  it("wants the token request as a form, with one Content-Type", function()
    local form = "grant_type=client_credentials&client_id=sandbox-client&client_secret=sandbox-secret"
    for _, headers in ipairs {
      { ["Content-Type"] = "application/json" },
      { ["Content-Type"] = "application/json", ["content-type"] = "application/x-www-form-urlencoded" },
      { ["Content-Type"] = "application/x-www-form-urlencodedX" },
    } do
      local status, body = sb:http("POST", "/oauth2/token", { auth = "none", requested_with = false,
        body = form, headers = headers })
      assert.equals(400, status)
      assert.equals("invalid_request", body.error)
      assert.matches("Content%-Type must be application/x%-www%-form%-urlencoded", body.error_description)
    end
    local status = sb:http("POST", "/oauth2/token", { auth = "none", requested_with = false, body = form,
      headers = { ["Content-Type"] = "Application/X-WWW-Form-Urlencoded; charset=utf-8" } })
    assert.equals(200, status)
  end)

  it("refuses bad clients and grants", function()
    local status, body = token("grant_type=client_credentials&client_id=sandbox-client&client_secret=nope")
    assert.equals(401, status)
    assert.equals("invalid_client", body.error)
    status, body = token("grant_type=password&client_id=sandbox-client&client_secret=sandbox-secret")
    assert.equals(400, status)
    assert.equals("unsupported_grant_type", body.error)
  end)

  it("expires tokens after their lifetime and on demand", function()
    local _, body = token("grant_type=client_credentials&client_id=sandbox-client&client_secret=sandbox-secret")
    assert.equals(200, status_of{ auth = { token = body.access_token } })
    sb:expire_tokens()
    assert.equals(401, status_of{ auth = { token = body.access_token } })
    _, body = token("grant_type=client_credentials&client_id=sandbox-client&client_secret=sandbox-secret")
    assert.equals(200, status_of{ auth = { token = body.access_token } })
    os.execute("sleep 2.2")
    assert.equals(401, status_of{ auth = { token = body.access_token } })
  end)

  it("lets the operator deploy to Web but not to Restricted", function()
    local _, enrolled = sb:http("POST", "/Enrollment/PFX", { auth = "operator",
      headers = { ["x-certificateformat"] = "STORE" },
      body = { Template = "WebServer", Subject = "CN=op.example.com" } })
    local id = math.tointeger(enrolled.CertificateInformation.KeyfactorId)
    local web, restricted = "5a4db0c5-0104-4e5a-9d00-000000000004", "5a4db0c5-0208-4e5a-9d00-000000000008"
    local _, answer = sb:http("POST", "/Enrollment/PFX/Deploy", { auth = "operator",
      body = { CertificateId = id, Password = "", Stores = { { StoreId = web }, { StoreId = restricted } } } })
    assert.same({ web }, answer.SuccessfulStores)
    assert.same({ restricted }, answer.FailedStores)
  end)
end)
