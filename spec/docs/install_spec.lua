-- The README's install section against the rockspecs: the Debian packages it
-- names cover every dependency of both rocks, and it says how to run a
-- script of one's own against a --tree install.  (make rock-check runs that
-- advice; this spec keeps the text from drifting away from the rockspecs.)

local read = require("support.files").must

-- The Debian package that provides each rock the rockspecs depend on.
local DEBIAN = { ["lua-cjson"] = "lua-cjson", http = "lua-http", luaossl = "lua-luaossl",
                 cqueues = "lua-cqueues", luafilesystem = "lua-filesystem" }

local function dependencies(path)
  local spec = {}
  assert(load(read(path), "=" .. path, "t", spec))()
  local names = {}
  for _, dep in ipairs(spec.dependencies) do
    local name = dep:match("^([%w_.-]+)")
    if name ~= "lua" and name ~= "keyfactor" then names[#names + 1] = name end
  end
  return names
end

describe("README install section", function()
  local readme = read("README.md")
  local apt = {}
  for line in readme:gmatch("apt%-get install ([^\n]*\n[^\n]*)") do
    for word in line:gsub("#[^\n]*", ""):gmatch("[%w.+-]+") do apt[word] = true end
  end

  it("installs from Debian every dependency of both rocks", function()
    for _, rockspec in ipairs { "keyfactor-0.1.0-1.rockspec", "keyfactor-sandbox-0.1.0-1.rockspec" } do
      for _, rock in ipairs(dependencies(rockspec)) do
        local package = DEBIAN[rock]
        assert.truthy(package, rockspec .. ": no Debian name known for " .. rock .. " (add it above)")
        assert.truthy(apt[package],
          "README's apt-get lines miss " .. package .. " (" .. rockspec .. " needs " .. rock .. ")")
      end
    end
  end)

  it("says how to run one's own script against a --tree install", function()
    assert.truthy(readme:find('eval "$(luarocks --lua-version=5.4 --tree DIR path)"', 1, true))
  end)
end)
