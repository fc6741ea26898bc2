-- keyfactor.auth.secrets (issue 13.5, 13.6): secrets live in C memory, out of
-- reach of anything that walks the client, and are redacted from errors in
-- every form a server may echo them: JSON-escaped, percent-encoded,
-- HTML-escaped, base64 (of Basic's "user:password" too), broken by the
-- stripping and cutting of error pages, and however short.
local fixture = require "support.fixture"
local secrets = require "keyfactor.auth.secrets"

local function contains(text, s) return tostring(text):find(s, 1, true) ~= nil end

describe("keyfactor.auth.secrets", function()
  describe("the vault", function()
    it("keeps values out of Lua tables; get, redact and tostring", function()
      local vault = secrets.new()
      vault:add("password", "Pfx/Secret")
      vault:add("token", "tok-123456")
      assert.are.equal("Pfx/Secret", vault:get("password"))
      assert.is_nil(vault:get("nothing"))
      assert.are.equal("keyfactor.secrets (2 secrets)", tostring(vault))
      for k, v in pairs(vault) do
        assert.are_not.equal("string", type(v), "vault field " .. tostring(k) .. " holds a string")
      end
      assert.are.equal("a *** b ***", vault:redact("a Pfx/Secret b tok-123456"))
      vault:add("password", "second-pw")           -- replaces the first
      assert.are.equal("Pfx/Secret ***", vault:redact("Pfx/Secret second-pw"))
      assert.are.equal(42, vault:redact(42))
    end)

    -- A core dump of the process must not hold them: the vault keeps its
    -- bytes in pages marked MADV_DONTDUMP ("dd" in /proc/self/smaps), which
    -- the kernel and gcore leave out of a dump.
    local smaps = io.open("/proc/self/smaps", "r")
    if smaps then smaps:close() end
    local linux = smaps and it or pending
    linux("keeps its bytes in pages a core dump leaves out (MADV_DONTDUMP), between guard pages", function()
      local secret = "vault-dd-" .. tostring(math.random(1e9)) .. "-" .. tostring(os.time())
      local vault = secrets.new()
      vault:add("password", secret, secrets.base64("admin:" .. secret))
      local mem = assert(io.open("/proc/self/mem", "rb"))
      local regions = {}
      for line in io.lines("/proc/self/smaps") do
        local a, b, perms = line:match("^(%x+)%-(%x+) (%S+)")
        if a then
          regions[#regions + 1] = { from = tonumber(a, 16), to = tonumber(b, 16), perms = perms }
        elseif line:match("^VmFlags:.* dd") then
          regions[#regions].dd = true
        end
      end
      local found, dd_count
      dd_count = 0
      for i, r in ipairs(regions) do
        if r.dd and r.to - r.from <= 64 * 1024 * 1024 then   -- not a sanitizer's reserved space
          dd_count = dd_count + 1
          local bytes = mem:seek("set", r.from) and mem:read(r.to - r.from)
          if bytes and bytes:find(secret, 1, true) then found = i end
        end
      end
      mem:close()
      assert.is_truthy(found, "the secret is in no MADV_DONTDUMP mapping (" .. dd_count .. " of them)")
      -- an inaccessible page right before and right after: a mapping of its own
      local before, r, after = regions[found - 1], regions[found], regions[found + 1]
      assert.are.equal("---p", before.perms)
      assert.are.equal(r.from, before.to)
      assert.are.equal("---p", after.perms)
      assert.are.equal(r.to, after.from)
    end)

    it("redacts the encoded forms", function()
      local vault = secrets.new()
      local pw = "P\195\164ss/w\"rd <&> x+y"   -- non-ASCII, slash, quote, HTML characters, plus, space
      vault:add("password", pw, secrets.base64("admin:" .. pw))
      local forms = {
        'P\195\164ss\\/w\\"rd <&> x+y',                    -- JSON with \/
        'P\195\164ss/w\\"rd <&> x+y',                      -- JSON minimal
        'P\\u00E4ss/w\\u0022rd \\u003C\\u0026\\u003E x\\u002By',   -- System.Text.Json
        'P\\u00e4ss/w\\u0022rd \\u003c\\u0026\\u003e x\\u002by',
        "P%C3%A4ss%2Fw%22rd%20%3C%26%3E%20x%2By", "P%c3%a4ss%2fw%22rd%20%3c%26%3e%20x%2by",
        "P%C3%A4ss%2Fw%22rd+%3C%26%3E+x%2By",
        "P\195\164ss/w&quot;rd &lt;&amp;&gt; x+y",
        secrets.base64(pw), secrets.base64("admin:" .. pw),
      }
      for _, form in ipairs(forms) do
        assert.are.equal("[***]", vault:redact("[" .. form .. "]"), form)
      end
      -- extra secrets of one call get the same treatment
      assert.are.equal("*** ***", vault:redact("one%2Ftwo one\\/two", { "one/two" }))
    end)

    it("redacts secrets of any length in server text, and 4+ characters in the client's own lines", function()
      local vault = secrets.new()
      vault:add("password", "ab")
      assert.are.equal("wrong password ***", vault:redact("wrong password ab"))
      assert.are.equal("GET /ab 200", vault:redact("GET /ab 200", nil, secrets.OWN_TEXT_MIN))
    end)

    it("base64 matches RFC 4648", function()
      for input, want in pairs { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
                                 fooba = "Zm9vYmE=", foobar = "Zm9vYmFy", ["\255\254"] = "//4=" } do
        assert.are.equal(want, secrets.base64(input))
      end
    end)
  end)

  describe("against the sandbox", function()
    local sb

    fixture.live(function(s) sb = s end)

    local API = "/KeyfactorAPI"

    -- The error a Basic client with `password` gets when the server answers
    -- 500 with `body` (the fault fires before authentication).
    local function error_for(password, body)
      local kf = fixture.client(sb, { password = password })
      sb:fault { method = "GET", path = API .. "/Status/Endpoints", status = 500, times = 1, body = body }
      local value, err = kf:status()
      kf:close()
      assert.is_nil(value)
      return err
    end

    local function clean(err, ...)
      local text = tostring(err) .. " " .. tostring(err.message)
      for i = 1, select("#", ...) do
        local s = select(i, ...)
        assert.is_false(contains(text, s), "leaked " .. s .. ": " .. text)
      end
      assert.is_true(contains(text, "***"), text)
    end

    it("a password echoed JSON-escaped in a body that is not valid JSON", function()
      clean(error_for("Pfx/Secret", '{"Message": "bad password Pfx\\/Secret'), "Pfx\\/Secret", "Secret")
    end)

    it("a password echoed \\u-escaped (System.Text.Json) or percent-encoded", function()
      clean(error_for("Pfx/Secret+1", '<p>got Pfx/Secret\\u002B1 and Pfx%2FSecret%2B1</p>'), "Secret")
    end)

    it("a password that the page's stripping would break up (tags, whitespace)", function()
      clean(error_for("open  sesame-99", "<html><p>password was open  sesame-99</p></html>"), "sesame")
      clean(error_for("two\nlines-pw", "<p>password was two\nlines-pw</p>"), "lines-pw")
    end)

    it("a password straddling the 200-character cut of an error page", function()
      local err = error_for("straddle-secret-42", "<p>" .. string.rep("x", 190) .. " straddle-secret-42</p>")
      clean(err, "straddle", "secret-42")
    end)

    it("the base64 of the Basic credentials", function()
      local pw = "basic-canary-77"
      local echoed = "<pre>Authorization: Basic " .. secrets.base64(sb.username .. ":" .. pw) .. "</pre>"
      clean(error_for(pw, echoed), secrets.base64(sb.username .. ":" .. pw), "basic-canary")
    end)

    it("a password shorter than 4 characters", function()
      clean(error_for("q7", '{"Message": "the password q7 is wrong"}'), "q7")
    end)

    -- Every value reachable from `root`: table keys and values,
    -- metatables, function upvalues, userdata uservalues.  `skip` values are
    -- not entered (the global table leads to everything, tests included).
    local function strings_reachable(root, skip)
      local found, seen, queue = {}, {}, { root }
      local function visit(v)
        if v == nil or seen[v] or skip[v] then return end
        local t = type(v)
        if t == "string" then found[#found + 1] = v; seen[v] = true
        elseif t == "table" or t == "function" or t == "userdata" or t == "thread" then
          seen[v] = true
          queue[#queue + 1] = v
        end
      end
      local i = 1
      while queue[i] do
        local v = queue[i]
        i = i + 1
        local t = type(v)
        if t == "table" then
          for k, x in next, v do visit(k); visit(x) end
        end
        if t == "table" or t == "userdata" then visit(debug.getmetatable(v)) end
        if t == "userdata" and debug.getuservalue then visit((debug.getuservalue(v))) end
        if t == "function" then
          for n = 1, 255 do
            local name, x = debug.getupvalue(v, n)
            if not name then break end
            visit(x)
          end
        end
      end
      return found
    end

    it("no secret is reachable by walking a client (tables, metatables, upvalues)", function()
      local password, client_secret = "walk-basic-pw-13", sb.client_secret
      local basic = fixture.client(sb, { password = password })
      local oauth = fixture.client(sb, {
        oauth = { token_url = sb.token_url, client_id = sb.client_id, client_secret = client_secret } })
      assert(oauth:status())                  -- a token fetched and cached
      local token = assert(oauth.http.secrets:get("token"))
      local skip = { [_G] = true, [package.loaded] = true, [package] = true }
      local forbidden = { password, client_secret, token, secrets.base64(sb.username .. ":" .. password) }
      for _, kf in ipairs { basic, oauth } do
        local found = strings_reachable(kf, skip)
        assert.is_true(#found > 20, "the walk found too little to mean anything")
        for _, s in ipairs(found) do
          for _, secret in ipairs(forbidden) do
            assert.is_false(contains(s, secret), "a secret is reachable from the client: " .. s)
          end
        end
      end
      -- and the client still authenticates with what only C holds
      assert(basic:status() == nil)           -- wrong password: a 401, sent with it
      assert(oauth:store_types())
      basic:close(); oauth:close()
    end)
  end)
end)
