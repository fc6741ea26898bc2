-- Authentication: HTTP Basic for the seed users, Bearer tokens from the
-- OAuth2 client-credentials endpoint (/oauth2/token).
local util = require "keyfactor.sandbox.util"

local auth = {}

auth.DOMAIN = "SANDBOX"
auth.users = {
  admin = { name = "SANDBOX\\admin", password = "sandbox-admin", admin = true },
  operator = { name = "SANDBOX\\operator", password = "sandbox-operator", admin = false,
    no_schedule = { Restricted = true } },
}
auth.CLIENT_ID = "sandbox-client"
auth.CLIENT_SECRET = "sandbox-secret"

local function unauthorized(message)
  local f = util.failure(401, "unauthorized", message)
  f.headers = { ["www-authenticate"] = 'Basic realm="Keyfactor"' }
  error(f, 0)
end

-- "SANDBOX\user", "user@SANDBOX" or "user" -> "user" (nil for a foreign domain).
local function bare_user(login)
  local domain, user = login:match("^([^\\]+)\\(.+)$")
  if not domain then user, domain = login:match("^([^@]+)@(.+)$") end
  if not user then return login:lower() end
  if domain:upper() ~= auth.DOMAIN then return nil end
  return user:lower()
end

local function decode_basic(value)
  local ok, plain = pcall(util.unbase64, value)
  if not ok or not plain then return nil end
  return plain:match("^([^:]*):(.*)$")
end

local function check_basic(value)
  local login, password = decode_basic(value)
  if not login then unauthorized("Malformed Basic credentials") end
  local name = bare_user(login)
  local user = name and auth.users[name]
  if not user or user.password ~= password then unauthorized("Invalid username or password") end
  return user
end

local function check_bearer(sandbox, token)
  local entry = sandbox.tokens[token]
  if not entry then unauthorized("Unknown bearer token") end
  if entry.expires <= util.monotime() then unauthorized("Bearer token expired") end
  return auth.users.admin
end

-- Returns the user record for the request's Authorization header, or raises 401.
function auth.authenticate(sandbox, headers)
  local value = headers:get("authorization")
  if not value then unauthorized("Authorization is required") end
  local scheme, rest = value:match("^%s*(%S+)%s+(%S+)%s*$")
  scheme = scheme and scheme:lower()
  if scheme == "basic" then return check_basic(rest) end
  if scheme == "bearer" then return check_bearer(sandbox, rest) end
  unauthorized("Unsupported authorization scheme")
end

-- May `user` schedule jobs on stores of `container_name`?
function auth.may_schedule(user, container_name)
  return not (user.no_schedule and user.no_schedule[container_name])
end

function auth.require_admin(user, what)
  if not user.admin then
    util.fail(403, "forbidden", string.format("User %s does not have permission to %s", user.name, what))
  end
end

---------------------------------------------------------------- OAuth2
function auth.parse_form(body)
  local form = {}
  for pair in (body or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    form[util.url_decode(k)] = util.url_decode(v)
  end
  return form
end

local function oauth_error(status, code, description)
  return { error = code, error_description = description }, status
end

-- POST /oauth2/token (client credentials grant).
function auth.token(sandbox, req)
  -- As identity providers do (RFC 6749 §4.4.2): one Content-Type, a form.
  local types = { req.headers:get("content-type") }
  if #types ~= 1 or types[1]:lower():match("^%s*([^;%s]+)") ~= "application/x-www-form-urlencoded" then
    return oauth_error(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded (got "
      .. (#types == 0 and "none" or table.concat(types, ", ")) .. ")")
  end
  local form = auth.parse_form(req.body)
  local id, secret = form.client_id, form.client_secret
  local header = req.headers:get("authorization")
  local basic = header and header:match("^%s*[Bb][Aa][Ss][Ii][Cc]%s+(%S+)")
  if basic then
    local hid, hsecret = decode_basic(basic)
    if hid then id, secret = util.url_decode(hid), util.url_decode(hsecret) end
  end
  if id ~= auth.CLIENT_ID or secret ~= auth.CLIENT_SECRET then
    return oauth_error(401, "invalid_client", "Client authentication failed")
  end
  if form.grant_type ~= "client_credentials" then
    return oauth_error(400, "unsupported_grant_type", "Only client_credentials is supported")
  end
  local token = util.random_hex(24)
  local lifetime = sandbox.opts.token_lifetime
  sandbox.tokens[token] = { expires = util.monotime() + lifetime }
  local answer = { access_token = token, token_type = "Bearer", expires_in = math.floor(lifetime) }
  if form.scope then answer.scope = form.scope end
  return answer
end

function auth.expire_tokens(sandbox)
  for _, entry in pairs(sandbox.tokens) do entry.expires = 0 end
end

return auth
