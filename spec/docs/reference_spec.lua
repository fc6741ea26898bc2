-- `make docs`: LDoc renders Markdown without a warning, documents the
-- public modules and not the internals, and "The calls" (generated from the
-- endpoint table) gives every call its endpoint, fields, answer and example.
-- Also: the project's files cite its own architecture document.
local endpoints = require "keyfactor.endpoints"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

describe("make docs", function()
  local log
  lazy_setup(function()
    local p = io.popen("make -s docs 2>&1; echo rc=$?")
    log = p:read("a")
    p:close()
  end)

  it("runs without an LDoc warning, Markdown rendered", function()
    assert.truthy(log:find("rc=0", 1, true), log)
    assert.is_nil(log:find("not found", 1, true), log)
    local readme = read("doc/html/topics/README.md.html")
    assert.truthy(readme:find("<table>", 1, true), "README tables are not rendered")
    assert.truthy(readme:find("<pre>", 1, true) or readme:find("<pre ", 1, true), "code blocks are not rendered")
    assert.is_nil(readme:find("```", 1, true), "a code fence was left as text")
  end)

  it("lists the public modules and leaves the internals out", function()
    local index = read("doc/html/index.html")
    for _, name in ipairs { "keyfactor", "keyfactor.errors", "keyfactor.pki", "keyfactor.show",
                            "keyfactor.repl", "keyfactor.cqueues" } do
      assert.truthy(index:find('href="modules/' .. name .. '.html"', 1, true), name)
    end
    for _, name in ipairs { "transport", "validate", "pager", "scheduler", "auth", "progress", "secrets" } do
      assert.is_nil(index:find("keyfactor." .. name .. ".html", 1, true), name)
    end
    assert.truthy(index:find("SANDBOX", 1, true) and index:find("ARCHITECTURE", 1, true))
  end)

  it("documents every call of the endpoint table with its endpoint, fields, answer and example", function()
    local page = read("doc/html/topics/calls.md.html")
    for _, e in ipairs(endpoints.list()) do
      local at = page:find('id="kf-' .. e.name .. '"', 1, true)
      assert.truthy(at, e.name)
      local section = page:sub(at, (page:find("<h3 ", at + 1, true) or #page))
      if e.path and e.method ~= "any" then
        assert.truthy(section:find(e.method .. " " .. e.path, 1, true), e.name .. ": endpoint")
      end
      for _, p in ipairs(e.params or {}) do
        assert.truthy(section:find("<code>" .. p.name .. "</code>", 1, true), e.name .. ": field " .. p.name)
      end
      if e.returns then assert.truthy(section:find("Returns:", 1, true), e.name .. ": returns") end
      if e.example then assert.truthy(section:find("<pre", 1, true), e.name .. ": example") end
    end
  end)

  it("the project cites docs/ARCHITECTURE.md, not a design file it does not carry", function()
    local p = io.popen("grep -rln 'DESIGN\\.md' lua csrc bin spec examples bench Makefile README.md docs 2>/dev/null")
    local found = p:read("a")
    p:close()
    assert.are.equal("", found)
    assert.truthy(read("docs/ARCHITECTURE.md"):find("## How a call flows", 1, true))
  end)
end)
