--- Credentials: HTTP Basic, a bearer token, or OAuth2 client credentials.
--
-- Secrets are handed to the C session (which gives them to libcurl) and
-- kept in the transport's vault (keyfactor.auth.secrets: C memory, redacted in
-- every encoded form); no Lua table of the client holds one, and they are
-- never part of a header string built in Lua, an error, or a debug line.
-- @module keyfactor.auth.credentials

local core = require "keyfactor.core"
local errors = require "keyfactor.errors"
local secrets = require "keyfactor.auth.secrets"
local transport = require "keyfactor.http.transport"

local auth = {}
local Auth = {}
Auth.__index = Auth

-- Refresh this long before the server would reject the token.
local EXPIRY_MARGIN = 30

--- Sets up `session` for the credentials in `config` (see keyfactor.new).
function auth.new(config, session, http)
  local self = setmetatable({ session = session, http = http, mode = "none",
    -- the longest a token request can take (its attempts), so that waiting
    -- for another coroutine's one always ends
    wait_max = ((config.timeout or 60) + 1) * ((config.retries or 2) + 1) }, Auth)
  if config.oauth then
    local o = config.oauth
    self.mode = "oauth"
    self.oauth = { token_url = o.token_url, client_id = o.client_id, scopes = o.scopes, audience = o.audience }
    http:set_secret("client_secret", o.client_secret,
      secrets.base64(transport.escape(o.client_id) .. ":" .. transport.escape(o.client_secret)))
  elseif config.token then
    self.mode = "bearer"
    session:set_credentials("bearer", config.token)
    http:set_secret("token", config.token)
  elseif config.username then
    self.mode = "basic"
    session:set_credentials("basic", config.username, config.password)
    http:set_secret("password", config.password, secrets.base64(config.username .. ":" .. config.password))
  end
  return self
end

function Auth:can_refresh()
  return self.mode == "oauth"
end

function Auth:invalidate()
  if self.oauth then self.oauth.expires_at = nil end
end

local function form(fields)
  local parts = {}
  for _, kv in ipairs(fields) do
    parts[#parts + 1] = transport.escape(kv[1]) .. "=" .. transport.escape(kv[2])
  end
  return table.concat(parts, "&")
end

-- POST to the token endpoint (RFC 6749 §4.4), client credentials in HTTP
-- Basic, each part form-encoded first as §2.3.1 asks.
function Auth:fetch_token()
  local o = self.oauth
  local fields = { { "grant_type", "client_credentials" } }
  if o.scopes and #o.scopes > 0 then fields[#fields + 1] = { "scope", table.concat(o.scopes, " ") } end
  if o.audience then fields[#fields + 1] = { "audience", o.audience } end
  local body, err = self.http:call("POST", "/oauth2/token", {
    url = o.token_url, body = form(fields), auth = false,
    userpwd = transport.escape(o.client_id) .. ":" .. transport.escape(self.http:secret("client_secret")),
    headers = { "Content-Type: application/x-www-form-urlencoded" },
  })
  if body == nil then
    if err.kind == "http" then err.kind = "auth" end
    err.message = "OAuth token request failed: " .. err.message
    return nil, err
  end
  if type(body) ~= "table" or type(body.access_token) ~= "string" then
    return nil, errors.auth { method = "POST", path = "/oauth2/token",
      message = "OAuth token response has no access_token" }
  end
  -- a token is sent as a header: CR/LF in it would add headers, or a
  -- second request, to every API call
  if body.access_token == "" or body.access_token:find("[%z\1-\31\127]") then
    return nil, errors.auth { method = "POST", path = "/oauth2/token",
      message = "OAuth token response's access_token holds characters a header cannot carry" }
  end
  local lifetime = tonumber(body.expires_in) or 3600
  o.expires_at = core.now() + math.max(1, lifetime - math.min(EXPIRY_MARGIN, lifetime / 2))
  self.http:set_secret("token", body.access_token)
  self.session:set_credentials("bearer", body.access_token)
  return true
end

--- True when a request may be sent now without fetching a token first.
function Auth:ready()
  local o = self.oauth
  return not o or (o.expires_at ~= nil and core.now() < o.expires_at)
end

-- Waits while another coroutine fetches a token (a parallel worker, a
-- cqueues coroutine), sleeping through the transport.  True when that fetch
-- ended; false when it was abandoned (its kf:parallel ended or was aborted
-- while it was suspended) or took longer than any fetch can: then the
-- caller fetches itself.
function Auth:await_fetch(fetch)
  local deadline = core.now() + self.wait_max
  while self.oauth.fetching == fetch do
    if fetch.run ~= nil and fetch.run ~= self.http:current_run() then return false end
    if core.now() > deadline then return false end
    self.http:sleep(0.005)
  end
  return true
end

--- Makes sure the credentials are usable before a request is sent: for
-- OAuth, fetches a token when there is none or it is about to expire.
-- One fetch at a time; the others wait for it and share its outcome.
function Auth:prepare()
  if self:ready() then return true end
  local o = self.oauth
  local current = o.fetching
  if current and self:await_fetch(current) then
    if self:ready() then return true end
    if current.err then return nil, current.err end
  end
  local fetch = { run = self.http:current_run() }
  o.fetching = fetch
  -- released on every path: a raised error (a debug callback, a bug) too
  local ok, done, err = pcall(self.fetch_token, self)
  if o.fetching == fetch then o.fetching = nil end
  if not ok then error(done, 0) end
  fetch.err = err
  return done, err
end

return auth
