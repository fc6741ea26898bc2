-- kf:stores, kf:store, kf:store_types, kf:containers against a live sandbox.
local fixture = require "support.fixture"

describe("stores", function()
  local sb, kf

  fixture.live(function(s, k) sb, kf = s, k end)

  local GUID = "^%x+%-%x+%-%x+%-%x+%-%x+$"

  it("kf:store_types lists PEM and PKCS12 with integer StoreType ids", function()
    local types = assert(kf:store_types())
    local by_name = {}
    for _, t in ipairs(types) do by_name[t.ShortName] = t end
    for _, name in ipairs { "PEM", "PKCS12" } do
      local t = by_name[name]
      assert.is_not_nil(t, name .. " missing")
      assert.is_true(fixture.is_integer(t.StoreType))
      assert.are.equal("table", type(t.PasswordOptions))
    end
    assert.is_true(by_name.PEM.PasswordOptions.EntrySupported)
    assert.are_not.equal(by_name.PEM.StoreType, by_name.PKCS12.StoreType)
  end)

  it("kf:containers lists Web and Restricted with integer ids", function()
    local containers = assert(kf:containers())
    local by_name = {}
    for _, c in ipairs(containers) do by_name[c.Name] = c end
    assert.are.equal(fixture.WEB, by_name.Web.Id)
    assert.are.equal(fixture.RESTRICTED, by_name.Restricted.Id)
    assert.is_true(fixture.is_integer(by_name.Web.Id))
    assert.is_true(by_name.Web.StoreCount >= 4)
    assert.is_true(by_name.Restricted.StoreCount >= 2)
  end)

  it("kf:stores iterates over every store, one page at a time", function()
    local from = #sb:requests()
    local all = fixture.collect(kf:stores { page_size = 3 })
    local seen = {}
    for _, st in ipairs(all) do
      assert.matches(GUID, st.Id)
      assert.is_nil(seen[st.Id])
      seen[st.Id] = true
    end
    local containers = assert(kf:containers())
    local total = 0
    for _, c in ipairs(containers) do total = total + c.StoreCount end
    assert.are.equal(total, #all)
    local pages = 0
    for i, r in ipairs(sb:requests()) do
      if i > from and r.path:lower() == "/keyfactorapi/certificatestores" then
        pages = pages + 1
        assert.matches("certificateStoreQuery.pageReturned=" .. pages, r.query, 1, true)
        assert.matches("certificateStoreQuery.returnLimit=3", r.query, 1, true)
      end
    end
    assert.are.equal(math.floor(#all / 3) + 1, pages)
  end)

  it("kf:stores filters by ContainerId", function()
    local web = fixture.collect(kf:stores { query = "ContainerId -eq " .. fixture.WEB })
    local restricted = fixture.collect(kf:stores { query = "ContainerId -eq " .. fixture.RESTRICTED })
    assert.is_true(#web >= 4)
    assert.is_true(#restricted >= 2)
    for _, st in ipairs(web) do
      assert.are.equal(fixture.WEB, st.ContainerId)
      assert.are.equal("Web", st.ContainerName)
    end
    for _, st in ipairs(restricted) do assert.are.equal("Restricted", st.ContainerName) end
  end)

  it("kf:stores sorts descending when asked", function()
    local down = fixture.collect(kf:stores { sort = "ClientMachine", ascending = false })
    for i = 2, #down do assert.is_true(down[i - 1].ClientMachine >= down[i].ClientMachine) end
    local up = fixture.collect(kf:stores { sort = "ClientMachine" })
    for i = 2, #up do assert.is_true(up[i - 1].ClientMachine <= up[i].ClientMachine) end
  end)

  it("kf:store reads one store by GUID", function()
    local first = fixture.collect(kf:stores { query = "ContainerId -eq " .. fixture.RESTRICTED })[1]
    local st = assert(kf:store(first.Id))
    assert.are.equal(first.Id, st.Id)
    assert.are.equal("Restricted", st.ContainerName)
    assert.is_true(fixture.is_integer(st.CertStoreType))
  end)

  it("kf:store answers nil, err 404 for an unknown GUID", function()
    local st, err = kf:store("00000000-1111-2222-3333-444444444444")
    assert.is_nil(st)
    assert.are.equal("http", err.kind)
    assert.are.equal(404, err.status)
    assert.are.equal("/CertificateStores/00000000-1111-2222-3333-444444444444", err.path)
  end)

  it("store_types and containers answer nil, err when the server fails", function()
    sb:fault { method = "GET", path = "/KeyfactorAPI/CertificateStoreTypes", status = 500, times = 1 }
    local types, err = kf:store_types()
    assert.is_nil(types)
    assert.are.equal(500, err.status)
    sb:fault { method = "GET", path = "/KeyfactorAPI/CertificateStoreContainers", status = 404, times = 1 }
    local containers, err2 = kf:containers()
    assert.is_nil(containers)
    assert.are.equal(404, err2.status)
  end)
end)
