-- Provisioning a service account end to end against a live sandbox: PAM
-- providers, security identities and roles, certificate collections, and
-- collectionId on certificate lookups, recover, download and metadata.
local fixture = require "support.fixture"

describe("provisioning", function()
  local sb, kf

  fixture.live(function(s, k) sb, kf = s, k end)

  local function all(iterator)
    local out = {}
    for item in iterator do out[#out + 1] = item end
    return out
  end

  describe("PAM providers", function()
    local vault

    local function vault_type()
      for _, t in ipairs(assert(kf:pam_provider_types())) do
        if t.Name == "HashiCorp-Vault" then return t end
      end
    end

    it("are created, read, listed, updated and deleted; secret values never come back", function()
      vault = assert(vault_type(), "no HashiCorp-Vault provider type")
      local created = assert(kf:create_pam_provider { Name = "vault-prod", ProviderType = { Id = vault.Id },
        ProviderTypeParamValues = {
          { Value = "https://vault.example.com:8200", ProviderTypeParam = { Name = "Host" } },
          { Value = "s.hvs-token-1", ProviderTypeParam = { Name = "Token" } },
        } })
      assert.is_true(fixture.is_integer(created.Id))
      assert.are.equal("vault-prod", created.Name)
      assert.are.equal(vault.Id, created.ProviderType.Id)
      local values = {}
      for _, pv in ipairs(created.ProviderTypeParamValues) do values[pv.ProviderTypeParam.Name] = pv.Value end
      assert.are.equal("https://vault.example.com:8200", values.Host)
      assert.are.equal(require("cjson").null, values.Token)          -- kept, never answered
      assert.are.equal("vault-prod", assert(kf:pam_provider(created.Id)).Name)
      local names = {}
      for pam in kf:pam_providers { query = 'Name -startswith "vault"' } do names[#names + 1] = pam.Name end
      assert.are.same({ "vault-prod" }, names)
      local updated = assert(kf:update_pam_provider { Id = created.Id, Name = "vault-main",
        ProviderType = { Id = vault.Id },
        ProviderTypeParamValues = { { Value = "https://vault2.example.com", ProviderTypeParam = { Name = "Host" } },
          { ProviderTypeParam = { Name = "Token" } } } })
      assert.are.equal("vault-main", updated.Name)
      assert.are.equal(2, #updated.ProviderTypeParamValues)   -- the secret left out of the update is kept
      assert.is_true(kf:delete_pam_provider(created.Id))
      local gone, err = kf:pam_provider(created.Id)
      assert.is_nil(gone)
      assert.are.equal(404, err.status)
    end)

    it("a parameter the provider type does not have is a 400 naming it", function()
      vault = vault or vault_type()
      local none, err = kf:create_pam_provider { Name = "vault-x", ProviderType = { Id = vault.Id },
        ProviderTypeParamValues = { { Value = "x", ProviderTypeParam = { Name = "Hots" } } } }
      assert.is_nil(none)
      assert.are.equal(400, err.status)
      assert.matches("ProviderTypeParamValues[1].ProviderTypeParam", err.message, 1, true)
      assert.matches("Hots", err.message, 1, true)
    end)

    it("parameter values are redacted from errors, even when the server echoes them", function()
      vault = vault or vault_type()
      sb:fault { method = "POST", path = "/KeyfactorAPI/PamProviders", status = 400, times = 1,
        body = '{"ErrorCode":"0xA0100001","Message":"cannot reach vault with token s.leaky-token-7"}' }
      local none, err = kf:create_pam_provider { Name = "vault-leak", ProviderType = { Id = vault.Id },
        ProviderTypeParamValues = { { Value = "s.leaky-token-7", ProviderTypeParam = { Name = "Token" } } } }
      assert.is_nil(none)
      local text = tostring(err) .. " " .. tostring(err.message)
      assert.is_nil(text:find("leaky", 1, true), text)
      assert.truthy(text:find("***", 1, true), text)
    end)

    it("checks the request before sending", function()
      local before = fixture.request_count(sb)
      fixture.raises(function() kf:create_pam_provider { Name = "p" } end, "kf:create_pam_provider",
        "ProviderType is required")
      fixture.raises(function() kf:create_pam_provider { Name = "p", ProviderType = { Id = "vault" } } end,
        "kf:create_pam_provider", "ProviderType.Id", "GUID")
      fixture.raises(function() kf:update_pam_provider { Name = "p", ProviderType = { Id = vault.Id } } end,
        "kf:update_pam_provider", "Id is required")
      fixture.raises(function() kf:delete_pam_provider("1") end, "kf:delete_pam_provider", "id", "integer")
      assert.are.equal(before, fixture.request_count(sb))
    end)
  end)

  describe("security identities and roles", function()
    it("the seed role Administrator holds SANDBOX\\admin", function()
      local roles = all(kf:security_roles { query = 'Name -eq "Administrator"' })
      assert.are.equal(1, #roles)
      local accounts = {}
      for _, identity in ipairs(roles[1].Identities) do accounts[#accounts + 1] = identity.AccountName end
      assert.are.same({ "SANDBOX\\admin" }, accounts)
      assert.are.equal("Administrator", assert(kf:security_role(roles[1].Id)).Name)
    end)

    it("an identity is added, given a role, updated, and deleted with its role memberships", function()
      local who = assert(kf:create_security_identity { AccountName = "SANDBOX\\svc-certs" })
      assert.is_true(fixture.is_integer(who.Id))
      assert.are.same({}, who.Roles)
      local role = assert(kf:create_security_role { Name = "CertBot", Description = "renewal service account",
        Permissions = { "Certificates:Read", "Certificates:Recover" },
        Identities = { { AccountName = "SANDBOX\\svc-certs" } } })
      assert.are.equal("CertBot", role.Name)
      assert.are.equal("SANDBOX\\svc-certs", role.Identities[1].AccountName)
      local listed
      for identity in kf:security_identities { query = 'AccountName -eq "SANDBOX\\svc-certs"' } do listed = identity end
      assert.are.equal("CertBot", listed.Roles[1].Name)
      local updated = assert(kf:update_security_role { Id = role.Id, Name = "CertBot", Description = "renewals",
        Permissions = { "Certificates:Read" } })
      assert.are.same({ "Certificates:Read" }, updated.Permissions)
      assert.are.equal(1, #updated.Identities)                -- Identities left out: kept
      assert.is_true(kf:delete_security_identity(who.Id))
      assert.are.same({}, assert(kf:security_role(role.Id)).Identities)
      assert.is_true(kf:delete_security_role(role.Id))
      local _, err = kf:security_role(role.Id)
      assert.are.equal(404, err.status)
    end)

    it("a role naming an account that is not an identity is a 400 naming the field", function()
      local none, err = kf:create_security_role { Name = "Ghosts", Description = "",
        Identities = { { AccountName = "SANDBOX\\nobody" } } }
      assert.is_nil(none)
      assert.are.equal(400, err.status)
      assert.matches("Identities[1].AccountName", err.message, 1, true)
      local _, dup = kf:create_security_role { Name = "administrator", Description = "again" }
      assert.are.equal(400, dup.status)
      assert.matches("already exists", dup.message, 1, true)
    end)

    it("checks the request before sending", function()
      local before = fixture.request_count(sb)
      fixture.raises(function() kf:create_security_role { Name = "R" } end, "kf:create_security_role",
        "Description is required")
      fixture.raises(function() kf:create_security_role { Name = "R", Description = "", Identities = { {} } } end,
        "kf:create_security_role", "Identities[1].AccountName")
      fixture.raises(function() kf:create_security_identity { Account = "x" } end, "kf:create_security_identity",
        "Account is not a known field")
      assert.are.equal(before, fixture.request_count(sb))
    end)
  end)

  describe("certificate collections", function()
    local tag, inside, outside, collection

    it("are saved queries: created, read by id and by name, listed, updated, deleted", function()
      tag = fixture.unique("coll")
      inside = fixture.enroll(kf, tag .. "-in.example.com", { format = "STORE" }).CertificateInformation.KeyfactorId
      outside = fixture.enroll(kf, fixture.unique("other") .. ".example.com", { format = "STORE" })
        .CertificateInformation.KeyfactorId
      collection = assert(kf:create_collection { Name = "Tagged " .. tag,
        Query = 'IssuedCN -startswith "' .. tag .. '"', Description = "one certificate" })
      assert.is_true(fixture.is_integer(collection.Id))
      assert.are.equal(1, collection.EstimatedCertCount)
      assert.are.equal(collection.Id, assert(kf:collection(collection.Id)).Id)
      assert.are.equal(collection.Id, assert(kf:collection("Tagged " .. tag)).Id)
      local found = false
      for c in kf:collections() do found = found or c.Id == collection.Id end
      assert.is_true(found)
      local copy = assert(kf:create_collection { Name = "Copy " .. tag, CopyFromId = collection.Id })
      assert.are.equal(collection.Query, copy.Query)
      local updated = assert(kf:update_collection { Id = copy.Id, Name = "Copy " .. tag, Favorite = true })
      assert.is_true(updated.Favorite)
      assert.is_true(kf:delete_collection(copy.Id))
      local _, err = kf:collection(copy.Id)
      assert.are.equal(404, err.status)
    end)

    it("collectionId restricts what certificate lookups return", function()
      local ids = {}
      for cert in kf:certificates { collectionId = collection.Id } do ids[#ids + 1] = cert.Id end
      assert.are.same({ inside }, ids)
      assert.are.equal(inside, assert(kf:certificate(inside, { collectionId = collection.Id })).Id)
      local none, err = kf:certificate(outside, { collectionId = collection.Id })
      assert.is_nil(none)
      assert.are.equal(404, err.status)
      local by_lookup, lookup_err = kf:certificate({ Id = outside }, { collectionId = collection.Id })
      assert.is_nil(by_lookup)
      assert.are.equal(404, lookup_err.status)
      assert.are.equal(outside, assert(kf:certificate(outside)).Id)     -- without it: everything
    end)

    it("collectionId on recover, download and set_metadata", function()
      local r = assert(kf:recover { CertID = inside, Password = "pfx-pw-1", collectionId = collection.Id })
      local key, cert = fixture.open_pkcs12(r.PFX, "pfx-pw-1")
      assert.is_not_nil(key)
      assert.are.equal(tag .. "-in.example.com", fixture.cn(cert))
      local _, err = kf:recover { CertID = outside, Password = "pfx-pw-1", collectionId = collection.Id }
      assert.are.equal(404, err.status)
      assert(kf:download { CertID = inside, collectionId = collection.Id })
      _, err = kf:download { CertID = outside, collectionId = collection.Id }
      assert.are.equal(404, err.status)
      assert.is_true(kf:set_metadata(inside, { Owner = "pki team" }, { collectionId = collection.Id }))
      assert.are.equal("pki team", assert(kf:certificate(inside)).Metadata.Owner)
      _, err = kf:set_metadata(outside, { Owner = "pki team" }, { collectionId = collection.Id })
      assert.are.equal(404, err.status)
      assert.is_nil(assert(kf:certificate(outside)).Metadata.Owner)
    end)

    it("an unknown collection id is a 404 naming the collection", function()
      local ok, err = pcall(function() for _ in kf:certificates { collectionId = 424242 } do end end)
      assert.is_false(ok)
      assert.are.equal(404, err.status)
      assert.matches("collection 424242", err.message, 1, true)
    end)

    it("a query the server cannot parse is a 400; the client checks the rest first", function()
      local none, err = kf:create_collection { Name = "Broken", Query = "IssuedCN -resembles x" }
      assert.is_nil(none)
      assert.are.equal(400, err.status)
      assert.matches("-resembles", err.message, 1, true)
      local before = fixture.request_count(sb)
      fixture.raises(function() kf:create_collection { Query = "x" } end, "kf:create_collection", "Name is required")
      fixture.raises(function() kf:update_collection { Id = 1, Name = "x", DuplicationField = 3 } end,
        "kf:update_collection", "DuplicationField", "0, 1, 2 or 4")
      fixture.raises(function() kf:collection("") end, "kf:collection", "id")
      fixture.raises(function() kf:certificates { collectionId = "1" } end, "kf:certificates", "collectionId")
      fixture.raises(function() kf:recover { CertID = 1, Password = "x", collectionId = 1.5 } end, "kf:recover",
        "collectionId")
      assert.are.equal(before, fixture.request_count(sb))
    end)
  end)
end)
