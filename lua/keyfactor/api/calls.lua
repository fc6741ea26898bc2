--- Client methods made from the endpoint table (keyfactor.api.endpoints).
--
-- `calls.prepare` checks a call's arguments against its entry (a mistake
-- raises, naming the call and the field) and builds the request;
-- `calls.send` sends it and applies the answer's shape and the partial rule,
-- so every call returns a value or `nil, err`, whatever the server sent.
-- @module keyfactor.api.calls

local errors = require "keyfactor.errors"
local outcome = require "keyfactor.outcome"
local pager = require "keyfactor.api.pager"
local show = require "keyfactor.show"
local transport = require "keyfactor.http.transport"
local v = require "keyfactor.api.validate"

local calls = {}

-- Per entry (and per variant table such as enroll's `csr`): the record
-- checker of the fields that come in a table argument, and params by name.
local compiled = setmetatable({}, { __mode = "k" })

local EMPTY = {}

local function compile(spec, entry)
  local c = compiled[spec]
  if c then return c end
  local positional = {}
  for _, arg in ipairs(entry.args) do positional[arg] = true end
  local fields, required, by_name, defaults = {}, {}, {}, {}
  for _, param in ipairs(spec.params) do
    by_name[param.name] = param
    if param.default ~= nil then defaults[#defaults + 1] = param end
    if not positional[param.name] and param.check then
      fields[param.name] = param.check
      if param.required then required[#required + 1] = param.name end
    end
  end
  -- where: the name errors give; optional_opts: an absent opts table needs no check
  c = { record = v.record(fields, required), by_name = by_name, where = "kf:" .. entry.name,
    optional_opts = #required == 0, defaults = defaults }
  compiled[spec] = c
  return c
end

-- `secret = "Value"` on a table param: every string under a key of that
-- name, however deep (ProviderTypeParamValues[i].Value), is a secret.
local function collect_secrets(value, key, out)
  for k, item in pairs(value) do
    if k == key and type(item) == "string" and item ~= "" then out[#out + 1] = item
    elseif type(item) == "table" then collect_secrets(item, key, out) end
  end
end

-- A field name that says its value is a secret (for `extra` fields, which
-- the table does not describe).
local function secret_name(name)
  local lower = name:lower()
  return lower:find("password", 1, true) or lower:find("secret", 1, true) or lower:find("token", 1, true)
    or lower:find("privatekey", 1, true) or lower:find("pkcs12", 1, true)
end

-- `extra`: fields the endpoint table does not know yet (a newer server's),
-- sent as given: into the body for a request table, the query for opts.
-- A known field must be set directly (so it keeps its checks).
local function check_extra(where, c, extra, label)
  if type(extra) ~= "table" then v.raise(where, label .. " must be a table, not " .. type(extra)) end
  for name in pairs(extra) do
    if type(name) ~= "string" or name == "" then v.raise(where, label .. " keys must be field names") end
    if c.by_name[name] then
      v.raise(where, label .. "." .. name .. " is a known field: set " .. name .. " itself, not in " .. label)
    end
  end
  return extra
end

--- Checks the arguments `...` of the call `entry` (or of `spec`, a variant
-- with its own `params`/`path`); returns the request: {values, path, body,
-- headers, query, secrets}.  A request or opts table may carry `extra`
-- (see check_extra).
function calls.prepare(entry, spec, ...)
  spec = spec or entry
  local c = compile(spec, entry)
  local where = c.where
  local values, extra, extra_at = {}, nil, nil
  for i, arg in ipairs(entry.args) do
    local value = select(i, ...)
    if value == nil and arg == "opts" and c.optional_opts then    -- luacheck: ignore 542
      -- nothing to check: every field is optional
    elseif arg == "req" or arg == "opts" then
      if value == nil and arg == "opts" then value = {} end
      if type(value) ~= "table" then
        v.raise(where, (arg == "req" and "the request" or "opts") .. " must be a table, not " .. type(value))
      end
      if value.extra ~= nil and not c.by_name.extra and entry.kind ~= "helper" then
        local label = arg == "opts" and "opts.extra" or "extra"
        extra, extra_at = check_extra(where, c, value.extra, label), arg == "opts" and "query" or "body"
        local rest = {}
        for k, x in pairs(value) do if k ~= "extra" then rest[k] = x end end
        value = rest
      end
      for k, x in pairs(v.check(where, c.record, value, arg == "opts" and "opts" or nil)) do values[k] = x end
    else
      local param = c.by_name[arg]
      if value == nil and param.absent == "check" then
        values[arg] = v.check(where, param.check, value, arg)   -- the checker's words for nil
      elseif value == nil then
        if param.required then v.raise(where, arg .. " is required") end
      else
        values[arg] = v.check(where, param.check, value, arg)
      end
    end
  end
  for _, group in ipairs(entry.one_of or EMPTY) do
    local any = false
    for _, name in ipairs(group) do any = any or values[name] ~= nil end
    if not any then v.raise(where, group.text) end
  end
  for _, param in ipairs(c.defaults) do
    if values[param.name] == nil then
      local d = param.default
      if type(d) == "function" then d = d() end
      values[param.name] = d
    end
  end
  for _, rule in ipairs(entry.rules or EMPTY) do
    local text = rule(values)
    if text then v.raise(where, text) end
  end
  local r = { values = values, path = spec.path or entry.path, headers = {}, secrets = {} }
  for _, param in ipairs(spec.params) do
    local value = values[param.name]
    if value ~= nil then
      local at = param.at or "body"
      if param.secret == true and type(value) == "string" then r.secrets[#r.secrets + 1] = value end
      if type(param.secret) == "string" and type(value) == "table" then
        collect_secrets(value, param.secret, r.secrets)
      end
      if at == "body" then
        r.body = r.body or {}
        r.body[param.field or param.name] = value
      elseif at == "whole" then
        r.body = value
      elseif at == "header" then
        r.headers[#r.headers + 1] = param.header .. ": " .. value
      elseif at == "query" then
        r.query = r.query or {}
        r.query[param.field or param.name] = value
      elseif at == "path" and type(value) ~= "table" then   -- a lookup table: the method resolves it
        -- a name in the path (a collection's) is percent-encoded; ids and GUIDs are left as they are
        local text = type(value) == "number" and string.format("%d", value) or transport.escape(value)
        local from, to = r.path:find("{" .. param.name .. "}", 1, true)
        if from then r.path = r.path:sub(1, from - 1) .. text .. r.path:sub(to + 1) end
      end
    end
  end
  for name, value in pairs(extra or EMPTY) do
    if type(value) == "string" and secret_name(name) then r.secrets[#r.secrets + 1] = value end
    if extra_at == "body" then
      r.body = r.body or {}
      r.body[name] = value
    else
      r.query = r.query or {}
      r.query[name] = value
    end
  end
  r.extra = extra
  for _, header in ipairs(spec.headers or entry.headers or EMPTY) do r.headers[#r.headers + 1] = header end
  return r
end

local function describe(value)
  if type(value) == "string" then return "a string" end
  if type(value) == "table" then return "a table" end
  return tostring(value)
end

--- `nil, err` (kind "decode") unless `value` has the `shape` the call expects.
function calls.shaped(value, shape, method, path, status)
  if shape == "none" then return true end
  if (shape == "object" or shape == "array") and type(value) ~= "table" then
    return nil, errors.decode { status = status, method = method, path = path,
      message = string.format("expected a JSON %s, got %s", shape, describe(value)) }
  end
  if value == false or value == nil then
    return nil, errors.decode { status = status, method = method, path = path,
      message = "expected an answer, got " .. tostring(value) }
  end
  return value
end

--- Sends a prepared request `r` of `entry` and returns the answer, checked
-- (shape, partial rule); or nil, err.
function calls.send(self, entry, r, opts)
  local method = entry.method
  local value, status = self.http:call(method, r.path, { body = r.body, headers = r.headers[1] and r.headers or nil,
    query = r.query, secrets = r.secrets })
  if value == nil then return nil, status end
  local shaped, err = calls.shaped(value, entry.answer or "any", method, r.path, status)
  if shaped == nil then return nil, err end
  local rule = (opts and opts.partial ~= nil) and opts.partial or entry.partial
  if rule and type(shaped) == "table" then return outcome.partial(rule, shaped, r.values, method, r.path) end
  if entry.mark then return show[entry.mark](shaped) end
  return shaped
end

---------------------------------------------------------------------------
-- Paging
---------------------------------------------------------------------------

calls.DEFAULT_PAGE_SIZE = 100

--- An iterator over GET `path`, paged with the query-string `prefix`
-- (`opts`: query, page_size, sort, ascending, prefetch; `extra` query parameters).
function calls.paged(self, path, prefix, opts, extra)
  local http = self.http
  local page_size = opts.page_size or calls.DEFAULT_PAGE_SIZE
  if page_size < 1 then error("page_size must be at least 1", 2) end
  local o = { query = opts.query, page_size = page_size, sort = opts.sort, ascending = opts.ascending }
  local function begin(page, start)
    return http:begin("GET", path, { query = pager.params(prefix, o, page, extra) }, start)
  end
  local function finish(call) return http:finish(call) end
  return pager.iterate(begin, finish, page_size, opts.prefetch and function() http:poke() end)
end

--- Every page of a short list, as one array; nil, err on failure.
function calls.all_pages(self, path, prefix)
  local ok, result = pcall(function()
    local all = {}
    for item in calls.paged(self, path, prefix, { page_size = 500 }) do all[#all + 1] = item end
    return all
  end)
  if ok then return result end
  if errors.is(result) then return nil, result end
  error(result, 0)
end

--- The option names of `entry.paths`, sorted.
function calls.path_options(entry)
  local names = {}
  for option in pairs(entry.paths or {}) do names[#names + 1] = option end
  table.sort(names)
  return names
end

--- The method for `entry`; `check_open(self, where)` guards the client.
function calls.method(entry, check_open)
  local where = "kf:" .. entry.name
  if entry.kind == "iterator" then
    return function(self, ...)
      check_open(self, where)
      local r = calls.prepare(entry, nil, ...)
      local opts = r.values
      local path = r.path
      -- entry.paths: a boolean option that picks another listing (assigned_to_me)
      for option, other in pairs(entry.paths or {}) do
        if opts[option] then
          if path ~= r.path then v.raise(where, "choose one of " .. table.concat(calls.path_options(entry), ", ")) end
          path = other
        end
      end
      local iterator = calls.paged(self, path, entry.prefix, opts, r.query)
      if entry.mark then return show.marking(iterator, show[entry.mark]) end
      return iterator
    end
  end
  if entry.all_pages then
    return function(self, ...)
      check_open(self, where)
      calls.prepare(entry, nil, ...)
      return calls.all_pages(self, entry.path, entry.prefix)
    end
  end
  return function(self, ...)
    check_open(self, where)
    return calls.send(self, entry, calls.prepare(entry, nil, ...))
  end
end

return calls
