-- A user's parallel workflow drives the sandbox without errors (issue 16
-- item 6): kf:parallel at concurrency 64, enrolling and then reading back.
local fixture = require "support.fixture"

describe("the sandbox under kf:parallel at concurrency 64", function()
  local kf
  fixture.live(function(_, client) kf = client end)

  it("enrolls 16 certificates at once and reads 512 back, with no error", function()
    local fns = {}
    for i = 1, 16 do
      fns[i] = function(c)
        return c:enroll{ Template = "WebServer", Subject = "CN=load" .. i .. ".example.com", format = "STORE" }
      end
    end
    local enrolled, errs = kf:parallel(fns, { concurrency = 64, progress = false })
    assert.same({}, errs or {})
    local ids, seen = {}, {}
    for i = 1, 16 do
      local id = enrolled[i].CertificateInformation.KeyfactorId
      assert.is_nil(seen[id], "ids are unique")
      seen[id], ids[i] = true, id
    end
    local reads = {}
    for i = 1, 512 do
      reads[i] = function(c) return c:certificate(ids[(i - 1) % 16 + 1]) end
    end
    local certs, rerrs = kf:parallel(reads, { concurrency = 64, progress = false })
    assert.same({}, rerrs or {})
    for i = 1, 512 do
      assert.equals("load" .. ((i - 1) % 16 + 1) .. ".example.com", certs[i].IssuedCN)
    end
  end)
end)
