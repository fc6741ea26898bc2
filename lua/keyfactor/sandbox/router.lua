-- Routing of /KeyfactorAPI requests to resource handlers.
--
-- ADDING AN ENDPOINT. Each resource module (certificates.lua, stores.lua...)
-- exports `routes`, an array of named-field entries:
--
--   { method = "GET", path = "/Certificates/{id:int}", handler = get_one,
--     summary = "One certificate by id" }
--
--   path     relative to /KeyfactorAPI. `{name}` matches one non-empty path
--            segment (passed as a string, as sent); `{name:int}` a decimal
--            integer (passed as a Lua integer; anything else is a 400 "The
--            value 'x' is not valid for name", as Keyfactor's model binder
--            answers). Matching is case-insensitive and a trailing "/" is
--            allowed; where two routes could match, literal segments win over
--            parameters (/Certificates/Revoke before /Certificates/{id:int}).
--   summary  one line, shown nowhere yet but required: it documents the table.
--
-- The module is listed in server.lua's MODULES. The handler is called as
--
--   handler(sandbox, req, captures...) -> answer, status, headers
--
--   sandbox  the server's state: sandbox.state (certificates, requests, jobs,
--            stores; see state.lua), sandbox.ca, sandbox.opts.
--   req      req.method ("GET"), req.path (decoded, as sent), req.lower_path,
--            req.query (raw query string), req.params (query parameters, keys
--            lower-cased), req.headers (lua-http headers: req.headers:get(name)),
--            req.body (string), req:json() (the decoded body; 400 when absent or
--            not JSON), req.user (the authenticated user, see auth.lua).
--   answer   a Lua value, sent as JSON (util.array{} for an empty array); nil
--            with status 204 sends no body.
--   status   defaults to 200; headers: an optional { name = value } table.
--
-- To fail, raise with util.fail(status, code, message) or util.bad_request /
-- util.not_found (and check.lua for request fields): the server answers with
-- Keyfactor's error body. Any other Lua error is a 500 and is logged.
-- Validate before changing state: a handler that raises has answered nothing.
--
-- Persistence needs nothing from a handler: with --data the server saves the
-- state after every non-GET request that reached a handler, and after the
-- job sweep completed a job (server.lua).
local util = require "keyfactor.sandbox.util"

local router = {}

local function split(path)
  local segments = {}
  for s in path:gmatch("[^/]*") do segments[#segments + 1] = s end
  -- "/a/b" splits into "", "a", "b" (and "a/b/" adds a trailing ""): drop them
  if segments[1] == "" then table.remove(segments, 1) end
  if #segments > 0 and segments[#segments] == "" then segments[#segments] = nil end
  return segments
end

local function compile(r, where)
  local function bad(msg) error(string.format("sandbox route %s: %s", where, msg), 0) end
  if type(r) ~= "table" then bad("must be a table") end
  if type(r.method) ~= "string" or not r.method:match("^%u+$") then bad("method must be upper case, e.g. \"GET\"") end
  if type(r.path) ~= "string" or r.path:sub(1, 1) ~= "/" then bad("path must start with /") end
  if type(r.handler) ~= "function" then bad("handler must be a function") end
  if type(r.summary) ~= "string" or r.summary == "" then bad("summary must be a non-empty string") end
  local segments = {}
  for i, s in ipairs(split(r.path)) do
    local name, kind = s:match("^{([%w_]+):?(%a*)}$")
    if name then
      if kind ~= "" and kind ~= "int" then bad("unknown parameter type '" .. kind .. "'") end
      segments[i] = { param = name, int = kind == "int" }
    elseif s:find("[{}]") then
      bad("malformed segment '" .. s .. "'")
    else
      segments[i] = { literal = s:lower() }
    end
  end
  return { method = r.method, path = r.path, handler = r.handler, summary = r.summary,
    segments = segments, display = r.path:gsub(":%a+}", "}") }
end

-- Literal segments before parameters, position by position.
local function before(a, b)
  for i = 1, math.min(#a.segments, #b.segments) do
    local la, lb = a.segments[i].literal ~= nil, b.segments[i].literal ~= nil
    if la ~= lb then return la end
  end
  if #a.segments ~= #b.segments then return #a.segments < #b.segments end
  return a.index < b.index
end

-- Builds the routing table from arrays of route entries (see the top).
function router.new(...)
  local routes = {}
  for m, list in ipairs{ ... } do
    for i, r in ipairs(list) do
      local c = compile(r, string.format("#%d of list %d (%s)", i, m, tostring(r.path)))
      c.index = #routes + 1
      routes[#routes + 1] = c
    end
  end
  table.sort(routes, before)
  return routes
end

-- Does `route` fit `segments`? Returns captures, or false plus the first
-- parameter whose value is not an integer.
local function fit(route, segments)
  if #route.segments ~= #segments then return nil end
  local captures = {}
  for i, seg in ipairs(route.segments) do
    local s = segments[i]
    if seg.literal then
      if seg.literal ~= s:lower() then return nil end
    elseif s == "" then
      return nil
    elseif seg.int then
      local n = s:match("^%-?%d+$") and math.tointeger(tonumber(s))
      if not n then return false, seg.param, s end
      captures[#captures + 1] = n
    else
      captures[#captures + 1] = s
    end
  end
  return captures
end

-- Finds the route of `method` and `path` (relative to /KeyfactorAPI).
-- Returns route, captures; raises 404, 405 or 400 (integer parameter).
function router.match(routes, method, path)
  local segments = split(path)
  local path_known, bad_param, bad_value
  for _, r in ipairs(routes) do
    local captures, param, value = fit(r, segments)
    if captures then
      if r.method == method then return r, captures end
      path_known = true
    elseif captures == false and r.method == method and not bad_param then
      bad_param, bad_value = param, value
    end
  end
  if path_known then util.fail(405, "bad_request",
    "The requested resource does not support http method '" .. method .. "'") end
  if bad_param then
    util.bad_request(string.format("The value '%s' is not valid for %s", bad_value, bad_param))
  end
  util.not_found("No HTTP resource was found that matches the request URI '/KeyfactorAPI" .. path .. "'")
end

-- "GET /Certificates/{id}" lines, as Keyfactor's /Status/Endpoints lists them.
function router.endpoints(routes)
  local out = util.array()
  for _, r in ipairs(routes) do out[#out + 1] = r.method .. " " .. r.display end
  return out
end

return router
