-- docs/ARCHITECTURE.md stays the map of the code: it names every module
-- under lua/, and the error kinds it, the README and keyfactor.errors list
-- are the ones keyfactor.errors makes.  (reference_spec checks that the code
-- cites no design document.)
local errors = require "keyfactor.errors"

local read = require("support.files").must

-- The kinds named in `text` after `lead`, in order: "`http`" or "\"http\"".
local function kinds_after(text, lead, stop)
  local from = assert(text:find(lead, 1, true), "no '" .. lead .. "'")
  local to = text:find(stop, from + #lead, true) or #text
  local found = {}
  for kind in text:sub(from, to):gmatch("[`\"](%l+)[`\"]") do
    for _, known in ipairs(errors.KINDS) do
      if kind == known then found[#found + 1] = kind end
    end
  end
  return found
end

describe("docs/ARCHITECTURE.md", function()
  local architecture = read("docs/ARCHITECTURE.md")

  it("names every module under lua/ by its path below lua/keyfactor/", function()
    local p = io.popen("cd lua/keyfactor && find . -name '*.lua' | sort")
    local missing, count = {}, 0
    for line in p:lines() do
      local name = line:gsub("^%./", "")
      count = count + 1
      -- as a word of its own: `fleet/claim.lua`, lua/keyfactor/fleet/claim.lua, sandbox/jobs.lua
      local pattern = "[%s`/(]" .. name:gsub("%p", "%%%0") .. "[%s`),.;:]"
      local top = not name:find("/", 1, true)
      local named = architecture:find(pattern)
      if named and top then
        -- a top-level name must not only stand as the tail of a deeper path (sandbox/pki.lua)
        named = architecture:find("[%s`(]" .. name:gsub("%p", "%%%0") .. "[%s`),.;:]")
          or architecture:find("lua/keyfactor/" .. name:gsub("%p", "%%%0"))
      end
      if not named then missing[#missing + 1] = name end
    end
    p:close()
    assert.is_true(count > 50, "found only " .. count .. " modules")
    assert.are.same({}, missing)
  end)

  it("lists the error kinds keyfactor.errors makes, as the README and errors.lua do", function()
    assert.are.same(errors.KINDS, kinds_after(architecture, "The error kinds are", "\n\n"))
    assert.are.same(errors.KINDS, kinds_after(read("README.md"), "`err` is a table — `kind` (", ")"))
    local header = read("lua/keyfactor/errors.lua"):match("^(.-)\n%-%- @module")
    local listed = {}
    for kind in header:gmatch("\n%-%-%s+(%l+)%s%s+") do
      for _, known in ipairs(errors.KINDS) do
        if kind == known then listed[#listed + 1] = kind end
      end
    end
    assert.are.same(errors.KINDS, listed)
  end)

  it("every kind has its constructor, and an unknown kind is refused", function()
    for _, kind in ipairs(errors.KINDS) do
      local err = errors[kind] { message = "m" }
      assert.is_true(errors.is(err))
      assert.are.equal(kind, err.kind)
    end
    assert.has_error(function() errors.new { kind = "oops" } end)
  end)
end)
