-- Writes the reference page of every kf: call from the endpoint table
-- (lua/keyfactor/endpoints.lua), as Markdown for LDoc:
--   lua5.4 docs/gen-reference.lua OUT.md        (make docs does this)
-- One section per call, grouped as the table groups them: the call, its
-- endpoint, the fields it accepts (name, type, required, meaning), what it
-- returns, and its example.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local endpoints = require "keyfactor.endpoints"

local out_path = assert(arg[1], "usage: gen-reference.lua OUT.md")

-- Markdown table cells: pipes escaped, newlines folded.
local function cell(text)
  return (tostring(text or ""):gsub("|", "\\|"):gsub("\n", " "))
end

local lines = {}
local function add(...) lines[#lines + 1] = table.concat({ ... }) end

add("# The calls")
add("")
add("Every `kf:` method, grouped as the API groups them. Field names are Keyfactor's own;")
add("requests and answers are plain Lua tables. A wrong argument raises a Lua error naming")
add("the call and the field before anything is sent; a remote failure returns `nil, err`")
add("(see `keyfactor.errors`). In the REPL, `help \"name\"` prints the same text.")
add("")
add("Every call that takes a request table (or an `opts` table) also takes `extra`: fields")
add("this table does not describe yet (a newer server's), sent as given — into the JSON body,")
add("or for `opts` the query string — while the other fields keep their checks, the answer its")
add("shape and the outcome rule; an `extra` string whose name holds Password, Secret, Token,")
add("PrivateKey or Pkcs12 is redacted like a secret. A field the table knows must be set directly.")
add("")

local groups, order = {}, {}
for _, e in ipairs(endpoints.list()) do
  local g = e.group or "Other"
  if not groups[g] then groups[g] = {} order[#order + 1] = g end
  table.insert(groups[g], e)
end

add("| call | endpoint | summary |")
add("|---|---|---|")
for _, g in ipairs(order) do
  for _, e in ipairs(groups[g]) do
    local endpoint = e.method and e.path and e.method ~= "any" and ("`" .. e.method .. " " .. e.path .. "`") or ""
    add("| [`kf:", e.name, "`](#kf-", e.name, ") | ", endpoint, " | ", cell(e.summary), " |")
  end
end
add("")

for _, g in ipairs(order) do
  add("## ", g)
  add("")
  for _, e in ipairs(groups[g]) do
    -- "kf-" keeps the anchors apart from LDoc's own ids (a call named "container")
    add('<h3 id="kf-', e.name, '"><code>kf:', e.name, "(", table.concat(e.args or {}, ", "), ")</code></h3>")
    add("")
    add(cell(e.summary), ".")
    add("")
    if e.method and e.path and e.method ~= "any" then add("**Endpoint:** `", e.method, " ", e.path, "`") add("") end
    if e.params and #e.params > 0 then
      add("| field | type | required | meaning |")
      add("|---|---|---|---|")
      for _, p in ipairs(e.params) do
        add("| `", p.name, "` | ", cell(p.type), " | ", p.required and "yes" or "", " | ", cell(p.doc), " |")
      end
      add("")
    end
    for _, set in ipairs(e.one_of or {}) do      -- "CertificateId or RequestId is required"
      add("*", cell(type(set) == "table" and set.text or set), ".*")
      add("")
    end
    if e.returns then add("**Returns:** ", cell(e.returns)) add("") end
    if e.example then
      add("```lua")
      add(e.example)
      add("```")
      add("")
    end
  end
end

local f = assert(io.open(out_path, "w"))
f:write(table.concat(lines, "\n"), "\n")
f:close()
print("reference: " .. #endpoints.list() .. " calls written to " .. out_path)
