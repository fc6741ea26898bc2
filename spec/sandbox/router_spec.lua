-- The route contract of lua/keyfactor/sandbox/router.lua.
-- Debian keeps basexx (needed by util) under the 5.1-5.3 paths only, as the launcher knows.
package.path = package.path .. ";/usr/share/lua/5.3/?.lua;/usr/share/lua/5.1/?.lua"
local router = require "keyfactor.sandbox.router"
local util = require "keyfactor.sandbox.util"

local function h(name) return function() return name end end

local routes = router.new({
  { method = "GET", path = "/Certificates/{id:int}", handler = h("one"), summary = "one" },
  { method = "POST", path = "/Certificates/Revoke", handler = h("revoke"), summary = "revoke" },
  { method = "GET", path = "/Certificates/Revoke", handler = h("get-revoke"), summary = "literal" },
}, {
  { method = "GET", path = "/CertificateStores/{id}/Inventory", handler = h("inv"), summary = "inv" },
})

local function failure(...)
  local ok, err = pcall(router.match, routes, ...)
  assert.is_false(ok)
  assert.is_true(util.is_failure(err))
  return err
end

describe("sandbox router", function()
  it("passes {name:int} as a Lua integer and {name} as sent", function()
    local r, c = router.match(routes, "GET", "/Certificates/42")
    assert.equals("one", r.handler())
    assert.equals("integer", math.type(c[1]))
    assert.equals(42, c[1])
    r, c = router.match(routes, "GET", "/CertificateStores/AbC-1/Inventory")
    assert.equals("inv", r.handler())
    assert.same({ "AbC-1" }, c)
  end)

  it("matches case-insensitively, with an optional trailing slash", function()
    assert.equals("one", (router.match(routes, "GET", "/cErTiFiCaTeS/7/")).handler())
    assert.equals("revoke", (router.match(routes, "POST", "/certificates/revoke")).handler())
  end)

  it("puts literal segments before parameters", function()
    local r, c = router.match(routes, "GET", "/Certificates/Revoke")
    assert.equals("get-revoke", r.handler())
    assert.same({}, c)
  end)

  it("answers 400 for a non-integer, 405 for another method, 404 for no route", function()
    local e = failure("GET", "/Certificates/abc")
    assert.equals(400, e.status)
    assert.matches("'abc' is not valid for id", e.message)
    assert.equals(400, failure("GET", "/Certificates/99999999999999999999999").status)
    assert.equals(405, failure("DELETE", "/Certificates/1").status)
    assert.equals(404, failure("GET", "/Nothing/here").status)
    assert.equals(404, failure("GET", "/CertificateStores//Inventory").status)
  end)

  it("lists endpoints as Keyfactor does, without parameter types", function()
    assert.same({ "POST /Certificates/Revoke", "GET /Certificates/Revoke",
      "GET /Certificates/{id}", "GET /CertificateStores/{id}/Inventory" }, router.endpoints(routes))
  end)

  it("refuses a malformed route entry at start-up, naming it", function()
    assert.has_error(function() router.new({ { "GET", "/x", h() } }) end,
      "sandbox route #1 of list 1 (nil): method must be upper case, e.g. \"GET\"")
    assert.has_error(function()
      router.new({ { method = "GET", path = "/x/{id:guid}", handler = h(), summary = "s" } })
    end, "sandbox route #1 of list 1 (/x/{id:guid}): unknown parameter type 'guid'")
    assert.has_error(function()
      router.new({ { method = "GET", path = "/x", handler = h() } })
    end, "sandbox route #1 of list 1 (/x): summary must be a non-empty string")
  end)
end)
