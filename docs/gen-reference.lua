-- Writes the reference page of every kf: call from the endpoint table
-- (lua/keyfactor/api/endpoints.lua), as Markdown for LDoc:
--   lua5.4 docs/gen-reference.lua OUT.md        (make docs does this)
-- One section per call, grouped as the table groups them: the call, its
-- endpoint, the fields it accepts (name, type, required, meaning), what it
-- returns, and its example.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local endpoints = require "keyfactor.api.endpoints"

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
add("## Answers a script meets")
add("")
add("- **Enrollment** (`kf:enroll`): the new id is `r.CertificateInformation.KeyfactorId`")
add("  (`KeyfactorRequestId` beside it; with approval pending, only the request id).")
add("- **Renewal** (`kf:renew`): the answer is flat, the new id is `r.KeyfactorId` (no")
add("  `CertificateInformation`); the new certificate stays on the server until deployed")
add("  (`kf:deploy`) or put where the old one is (`kf:replace`).")
add("- **Where a certificate is** (`kf:certificate(id, {includeLocations = true})`): each entry of")
add("  `Locations` names its store `CertStoreId` (with `Alias`, `StoreMachine`, `StorePath`),")
add("  while `kf:deploy` wants `Stores = {{StoreId = ..., Alias = ...}}`:")
add("  `{StoreId = loc.CertStoreId, Alias = loc.Alias}`. Locations appear once the store's job ran")
add("  (`kf:wait_deployed`).")
add("- **Deployment** (`kf:deploy`, `kf:replace`): `SuccessfulStores` and `FailedStores` are arrays of")
add("  store GUIDs; a failed store makes the call `nil, err` with `err.kind == \"partial\"`.")
add("- **Dates** (`NotBefore`, `NotAfter`, `ImportDate`) are ISO 8601 UTC text")
add("  (`\"2027-11-25T13:24:19Z\"`), so queries compare them as text:")
add("")
add("```lua")
add('local soon = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + 30 * 86400)')
add('for c in kf:certificates{query = \'NotAfter -le "\' .. soon .. \'"\'} do print(c.Id, c.NotAfter) end')
add("```")
add("")
add("**Trying a renewal in the sandbox.** The sandbox takes one field of its own in an enrollment")
add("body, `ValidityDays` (a number; 365 by default, negative for one already expired), so a")
add("certificate that is due for renewal can be made at once. `kf:enroll` accepts only the API's")
add("own fields, so send it with `kf:request`:")
add("")
add("```lua")
add('local r = assert(kf:request("POST", "/Enrollment/PFX", {')
add('  headers = {["x-certificateformat"] = "STORE"},')
add('  body = {Template = "WebServer", Subject = "CN=soon.example.com", ValidityDays = 3,')
add('          Timestamp = os.date("!%Y-%m-%dT%H:%M:%SZ")}}))')
add("local id = r.CertificateInformation.KeyfactorId        -- expires in 3 days")
add("local renewed = assert(kf:renew{CertificateId = id})   -- renewed.KeyfactorId: the new one")
add("```")
add("")
add("## Every call")
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
    add("| [`", endpoints.call_text(e), "`](#kf-", e.name, ") | ", endpoint, " | ", cell(e.summary), " |")
  end
end
add("")

for _, g in ipairs(order) do
  add("## ", g)
  add("")
  for _, e in ipairs(groups[g]) do
    -- "kf-" keeps the anchors apart from LDoc's own ids (a call named "container")
    add('<h3 id="kf-', e.name, '"><code>', endpoints.call_text(e), "</code></h3>")
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
