-- `make docs`: LDoc renders Markdown without a warning, documents the
-- public modules and not the internals, and "The calls" (generated from the
-- endpoint table) gives every call its endpoint, fields, answer and example.
-- Also: the project's files cite its own architecture document.
local endpoints = require "keyfactor.api.endpoints"

local read = require("support.files").must

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

  -- The parameters LDoc lists in a function's section, name -> description
  -- (tags stripped, spaces folded).
  local function parameters(page, name)
    local at = assert(page:find('<a name = "' .. name .. '"></a>', 1, true), "no section for " .. name)
    local section = page:sub(at, (page:find('<a name = "', at + 1, true) or #page))
    local found = {}
    for param, text in section:gmatch('<span class="parameter">([%w_]+)</span>(.-)</?[ul][il]>') do
      found[param] = text:gsub("<[^>]*>", ""):gsub("%s+", " "):gsub("^ ", "")
    end
    return found, section
  end

  it("documents keyfactor.new with every option it takes, and from_env", function()
    local page = read("doc/html/modules/keyfactor.html")
    local params = parameters(page, "new")
    -- the options keyfactor.new checks, read from its OPTIONS record
    local source = read("lua/keyfactor/init.lua")
    local record = assert(source:match("local OPTIONS = v%.record%((%b{})"))
    local count = 0
    for option in record:gmatch("([%a_]+)%s*=") do
      count = count + 1
      assert.truthy(params[option], "keyfactor.new: option " .. option .. " is not documented")
      assert.truthy(params[option]:find("%a"), "keyfactor.new: option " .. option .. " has no description")
    end
    assert.is_true(count >= 20, "OPTIONS not found in init.lua")
    assert.truthy(page:find('<a name = "from_env"></a>', 1, true))
    assert.truthy(page:find("command_config.json", 1, true))
  end)

  it("renders keyfactor.pki's examples as code and describes every parameter", function()
    local page = read("doc/html/modules/keyfactor.pki.html")
    for _, name in ipairs { "key", "key_pem", "csr", "certificates_from_pem", "certificate_info",
                            "needs_renewal", "split_pkcs12", "bundle", "write_file", "write_key" } do
      local params, section = parameters(page, name)
      assert.truthy(next(params), name .. ": no parameters listed")
      for param, text in pairs(params) do
        assert.truthy(text:find("%a"), "pki." .. name .. ": parameter " .. param .. " has no description")
      end
      assert.truthy(section:find("Returns:", 1, true), name .. ": no Returns")
    end
    for _, code in ipairs { 'pki.key{ type = "RSA", bits = 3072 }', "thumbprint = ",
                            "pki.bundle{ certificate = pem" } do
      local at = assert(page:find(code, 1, true), code)
      local before = page:sub(1, at)
      assert.is_true((before:match(".*()<pre") or 0) > (before:match(".*()</pre>") or 0),
        code .. " is not inside a code block")
    end
    -- a summary line is one sentence, not the example that follows it
    local index = read("doc/html/modules/keyfactor.pki.html"):match('<table class="function_list">(.-)</table>')
    assert.is_nil(index:find("thumbprint =", 1, true), "certificate_info's summary swallowed its example")
  end)

  it("shows every call's true signature in the headings and in the REPL's help (one source)", function()
    local page = read("doc/html/topics/calls.md.html")
    local Client = require "keyfactor.api.client"
    local repl = require "keyfactor.repl"
    for _, e in ipairs(endpoints.list()) do
      local text = endpoints.call_text(e)
      assert.truthy(page:find('id="kf-' .. e.name .. '"><code>' .. text .. "</code>", 1, true), text)
      assert.are.equal(text, repl.help(nil, e.name):match("^(.-) %-%- "))
      local method = rawget(Client, e.name)
      if e.hand and type(method) == "function" then      -- written by hand: its own parameter names
        local names = {}
        for i = 2, debug.getinfo(method, "u").nparams do names[#names + 1] = debug.getlocal(method, i) end
        assert.are.same(names, e.args, "kf:" .. e.name .. " is declared with other arguments")
      end
    end
    assert.are.equal("kf:certificate(id, opts)", endpoints.call_text(endpoints.get("certificate")))
    assert.are.equal("kf:wait_deployed(cert_id, store_ids, opts)", endpoints.call_text(endpoints.get("wait_deployed")))
    assert.are.equal("kf:parallel(fns, opts)", endpoints.call_text(endpoints.get("parallel")))
    assert.are.equal("kf:request(method, path, opts)", endpoints.call_text(endpoints.get("request")))
  end)

  it("gives every topic of the index a description", function()
    local index = read("doc/html/index.html")
    local topics = 0
    local row = '<a href="topics/([^"]+)%.html">[^<]*</a></td>%s*<td class="summary">(.-)</td>'
    for name, summary in index:gmatch(row) do
      topics = topics + 1
      assert.truthy(summary:find("%a"), name .. " has no description in the index")
    end
    assert.are.equal(4, topics)
  end)

  it("describes the answers a script meets, an expiry query and short-lived sandbox certificates", function()
    local page = read("doc/html/topics/calls.md.html")
    for _, text in ipairs { "CertStoreId", "StoreId = loc.CertStoreId", "r.KeyfactorId", "NotAfter -le",
                            "ValidityDays" } do
      assert.truthy(page:find(text, 1, true), "The calls do not say " .. text)
    end
    assert.truthy(read("doc/html/topics/SANDBOX.md.html"):find("ValidityDays", 1, true))
  end)

  it("the project cites docs/ARCHITECTURE.md, not a design file it does not carry", function()
    local p = io.popen("grep -rln 'DESIGN\\.md' lua csrc bin spec examples bench Makefile README.md docs 2>/dev/null")
    local found = p:read("a")
    p:close()
    assert.are.equal("", found)
    -- nor a section of one ("DESIGN §6.2"): a comment says the rule itself
    p = io.popen("grep -rn 'DESIGN' lua bin csrc 2>/dev/null")
    found = p:read("a")
    p:close()
    assert.are.equal("", found)
    assert.truthy(read("docs/ARCHITECTURE.md"):find("## How a call flows", 1, true))
  end)
end)
