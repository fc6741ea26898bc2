-- The subset of Keyfactor's query language the sandbox understands:
--   Field -op value [AND|OR ...], parentheses, "quoted strings", bare numbers
--   and booleans. Operators: -eq -ne -contains -notcontains -startswith
--   -endswith -gt -ge -lt -le -isnull -notnull. Field names are case-insensitive.
local util = require "keyfactor.sandbox.util"

local query = {}

-- A queryable field: `get(record)` gives its value, `kind` ("string",
-- "number", "date", "bool") how the query language compares it.
function query.field(get, kind) return { get = get, kind = kind or "string" } end

local OPS = {
  eq = true, ne = true, contains = true, notcontains = true, startswith = true,
  endswith = true, gt = true, ge = true, lt = true, le = true,
  isnull = true, notnull = true,
}
local UNARY = { isnull = true, notnull = true }

local function bad(msg) util.fail(400, "bad_query", "Invalid query: " .. msg) end

local function tokenize(s)
  local tokens, i = {}, 1
  while i <= #s do
    local c = s:sub(i, i)
    if c:match("%s") then
      i = i + 1
    elseif c == "(" or c == ")" then
      tokens[#tokens + 1] = { kind = c }
      i = i + 1
    elseif c == '"' or c == "'" then
      local buf, j = {}, i + 1
      while true do
        local d = s:sub(j, j)
        if d == "" then bad("unterminated string starting at position " .. i) end
        local escaped = d == "\\" and s:sub(j + 1, j + 1)
        if escaped == c or escaped == "\\" then   -- \" is a quote, \\ a backslash
          buf[#buf + 1] = escaped
          j = j + 2
        elseif d == c then
          break
        else
          buf[#buf + 1] = d
          j = j + 1
        end
      end
      tokens[#tokens + 1] = { kind = "string", value = table.concat(buf) }
      i = j + 1
    elseif c == "-" and s:sub(i + 1, i + 1):match("%a") then
      local word = s:match("^%-(%a+)", i)
      if not OPS[word:lower()] then bad("unknown operator '-" .. word .. "'") end
      tokens[#tokens + 1] = { kind = "op", value = word:lower() }
      i = i + #word + 1
    else
      local word = s:match("^[^%s()\"']+", i)
      tokens[#tokens + 1] = { kind = "word", value = word }
      i = i + #word
    end
  end
  return tokens
end

local Parser = {}
Parser.__index = Parser

function Parser:peek() return self.tokens[self.pos] end
function Parser:next()
  local t = self.tokens[self.pos]
  self.pos = self.pos + 1
  return t
end

local function keyword(t, word)
  return t and t.kind == "word" and t.value:upper() == word
end

function Parser:literal()
  local t = self:next()
  if not t then bad("missing value at end of query") end
  if t.kind == "string" then return { text = t.value } end
  if t.kind ~= "word" then bad("expected a value, got '" .. (t.value or t.kind) .. "'") end
  local lower = t.value:lower()
  if lower == "true" or lower == "false" then return { bool = lower == "true", text = lower } end
  local n = tonumber(t.value)
  if n then return { number = n, text = t.value } end
  bad("value '" .. t.value .. "' must be quoted")
end

function Parser:comparison()
  local t = self:next()
  if not t then bad("expected a field name at end of query") end
  if t.kind == "(" then
    local node = self:expression()
    local close = self:next()
    if not close or close.kind ~= ")" then bad("missing ')'") end
    return node
  end
  if t.kind ~= "word" or not t.value:match("^[%a_][%w_%.]*$") then
    bad("expected a field name, got '" .. tostring(t.value or t.kind) .. "'")
  end
  local field = t.value
  if not self.fields[field:lower()] then bad("unknown field '" .. field .. "'") end
  local op = self:next()
  if not op or op.kind ~= "op" then bad("expected an operator after '" .. field .. "'") end
  local node = { field = field:lower(), op = op.value }
  if not UNARY[op.value] then node.value = self:literal() end
  return node
end

function Parser:conjunction()
  local node = self:comparison()
  while keyword(self:peek(), "AND") do
    self:next()
    node = { op = "and", node, self:comparison() }
  end
  return node
end

function Parser:expression()
  local node = self:conjunction()
  while keyword(self:peek(), "OR") do
    self:next()
    node = { op = "or", node, self:conjunction() }
  end
  return node
end

-- fields: map of lower-case field name -> { get = function(record), kind = "string"|"number"|"date"|"bool" }
-- Returns a predicate function(record) -> boolean, or raises a 400 failure.
function query.compile(text, fields)
  if text == nil or text:match("^%s*$") then return function() return true end end
  local p = setmetatable({ tokens = tokenize(text), pos = 1, fields = fields }, Parser)
  local ast = p:expression()
  if p:peek() then bad("unexpected '" .. tostring(p:peek().value or p:peek().kind) .. "'") end
  return function(record) return query.eval(ast, record, fields) end
end

local function compare(kind, a, b)
  if kind == "number" or kind == "date" then
    a, b = tonumber(a), tonumber(b)
    if not a or not b then return nil end
    return a < b and -1 or (a > b and 1 or 0)
  end
  a, b = tostring(a):lower(), tostring(b):lower()
  return a < b and -1 or (a > b and 1 or 0)
end

local function coerce(kind, value)
  if kind == "date" then
    local t = util.parse_iso(value.text)
    if not t then bad("'" .. value.text .. "' is not a date") end
    return t
  elseif kind == "number" then
    if not value.number then bad("'" .. value.text .. "' is not a number") end
    return value.number
  elseif kind == "bool" then
    return value.bool ~= nil and value.bool or value.text:lower() == "true"
  end
  return value.text
end

function query.eval(node, record, fields)
  if node.op == "and" then
    return query.eval(node[1], record, fields) and query.eval(node[2], record, fields)
  elseif node.op == "or" then
    return query.eval(node[1], record, fields) or query.eval(node[2], record, fields)
  end
  local f = fields[node.field]
  local actual = f.get(record)
  if node.op == "isnull" then return actual == nil or actual == "" end
  if node.op == "notnull" then return actual ~= nil and actual ~= "" end
  local want = coerce(f.kind, node.value)
  if actual == nil then return node.op == "ne" or node.op == "notcontains" end
  if f.kind == "bool" then
    if node.op == "eq" then return actual == want end
    if node.op == "ne" then return actual ~= want end
    bad("operator -" .. node.op .. " does not apply to a boolean field")
  end
  local op = node.op
  if op == "contains" or op == "notcontains" or op == "startswith" or op == "endswith" then
    local a, w = tostring(actual):lower(), tostring(node.value.text):lower()
    if op == "contains" then return a:find(w, 1, true) ~= nil end
    if op == "notcontains" then return a:find(w, 1, true) == nil end
    if op == "startswith" then return a:sub(1, #w) == w end
    return w == "" or a:sub(-#w) == w
  end
  local c = compare(f.kind, actual, want)
  if c == nil then return false end
  if op == "eq" then return c == 0 elseif op == "ne" then return c ~= 0
  elseif op == "gt" then return c > 0 elseif op == "ge" then return c >= 0
  elseif op == "lt" then return c < 0 else return c <= 0 end
end

---------------------------------------------------------------- fields
-- A queryable field of a record: `get(record)` its value, `kind` "string"
-- (default), "number", "date" (epoch seconds) or "bool".
function query.field(get, kind) return { get = get, kind = kind or "string" } end

---------------------------------------------------------------- paging
-- Reads <prefix>.queryString/.pageReturned/.returnLimit/.sortField/.sortAscending
-- from the request's (lower-cased) query params, filters, sorts and pages.
-- Prefix "": the bare names QueryString, PageReturned, ... (Command 25's
-- newer endpoints, e.g. /EnrollmentPatterns).  `render` (optional): what
-- each record of the page becomes in the answer, render(record).
function query.page(records, params, prefix, fields, render)
  local function name(suffix)
    return prefix == "" and suffix:sub(1, 1):upper() .. suffix:sub(2) or prefix .. "." .. suffix
  end
  local predicate = query.compile(params[name("queryString"):lower()], fields)
  local page = query.int_param(params, name("pageReturned"), 1)
  local limit = query.int_param(params, name("returnLimit"), 50)
  if page < 1 then util.bad_request(name("pageReturned") .. " must be at least 1") end
  if limit < 1 then util.bad_request(name("returnLimit") .. " must be at least 1") end
  local matched = {}
  for _, r in ipairs(records) do
    if predicate(r) then matched[#matched + 1] = r end
  end
  local sort_field = params[name("sortField"):lower()]
  local descending = query.int_param(params, name("sortAscending"), 0) == 1
  if sort_field and sort_field ~= "" then
    local f = fields[sort_field:lower()]
    if not f then util.bad_request(name("sortField") .. ": unknown field '" .. sort_field .. "'") end
    query.sort(matched, f, descending)
  elseif descending then
    query.sort(matched, fields.id, true)
  end
  local out = util.array()
  for i = (page - 1) * limit + 1, math.min(#matched, page * limit) do
    local record = matched[i]
    if render then record = render(record) end
    out[#out + 1] = record
  end
  return out
end

function query.sort(list, f, descending)
  -- decorate with the original position so the sort is stable
  for i, r in ipairs(list) do list[i] = { r, i } end
  table.sort(list, function(a, b)
    local va, vb = f.get(a[1]), f.get(b[1])
    local c = (va == nil or vb == nil) and 0 or compare(f.kind, va, vb) or 0
    if c == 0 then return a[2] < b[2] end
    if descending then return c > 0 end
    return c < 0
  end)
  for i, pair in ipairs(list) do list[i] = pair[1] end
end

function query.int_param(params, key, default)
  local v = params[key:lower()]
  if v == nil or v == "" then return default end
  local n = math.tointeger(tonumber(v))
  if not n then util.bad_request("query parameter " .. key .. " must be an integer") end
  return n
end

-- A boolean query parameter: true/false (any case) or 1/0, as the model
-- binder takes them; anything else is a 400.
function query.bool_param(params, key)
  local v = params[key:lower()]
  if v == nil or v == "" then return false end
  local lower = v:lower()
  if lower == "true" or v == "1" then return true end
  if lower == "false" or v == "0" then return false end
  util.bad_request("query parameter " .. key .. " must be true or false, not '" .. v .. "'")
end

return query
