-- The session keeps the easy handle of a plain request (a bodyless GET
-- with the session's credentials) configured for the next one instead of
-- resetting it (session.c, kf_session_add).  Whatever a request sets, and
-- whatever changes in the session, the next request on that handle must
-- carry nothing of it: these run one request at a time, so every request
-- reuses the same handle, and read the bytes each one put on the wire.
local capture = require "support.capture"
local core = require "keyfactor.core"

describe("a reused easy handle", function()
  local server

  setup(function() server = capture.start() end)
  teardown(function() server:stop() end)

  local function send(session, spec)
    spec.url = spec.url or server.url .. "/x"
    local request = session:start(spec)
    session:wait(request)
    assert.are.equal(200, (request:result()))
    local requests = server:requests()
    return requests[#requests]
  end

  local function basic(user, password)
    return "Basic " .. require("keyfactor.util.base64").encode(user .. ":" .. password)
  end

  it("sends the credentials the session has now", function()
    local s = core.session { headers = { "X-Session: 1" } }
    s:set_credentials("basic", "alice", "one")
    assert.are.equal(basic("alice", "one"), send(s, { method = "GET" }).headers.authorization)
    s:set_credentials("basic", "bob", "two")
    assert.are.equal(basic("bob", "two"), send(s, { method = "GET" }).headers.authorization)
    s:set_credentials("bearer", "token-3")
    assert.are.equal("Bearer token-3", send(s, { method = "GET" }).headers.authorization)
    s:set_credentials("none")
    assert.is_nil(send(s, { method = "GET" }).headers.authorization)
    s:close()
  end)

  it("carries nothing of the request before", function()
    local s = core.session { headers = { "X-Session: 1" } }
    s:set_credentials("basic", "alice", "one")
    local function plain_get()
      local seen = send(s, { method = "GET" })
      assert.are.equal("GET", seen.method)
      assert.are.equal("", seen.body)
      assert.is_nil(seen.headers["content-length"])
      assert.are.equal("1", seen.headers["x-session"])
      assert.is_nil(seen.headers["x-extra"])
      assert.are.equal(basic("alice", "one"), seen.headers.authorization)
      return seen
    end
    plain_get()
    local posted = send(s, { method = "POST", body = '{"a":1}', headers = { "X-Extra: 2" } })
    assert.are.equal("POST", posted.method)
    assert.are.equal('{"a":1}', posted.body)
    plain_get()
    assert.are.equal("DELETE", send(s, { method = "DELETE" }).method)
    plain_get()
    assert.are.equal("PUT", send(s, { method = "PUT", body = "{}" }).method)
    plain_get()
    assert.is_nil(send(s, { method = "GET", auth = false }).headers.authorization)
    plain_get()
    assert.are.equal(basic("client", "secret"),
      send(s, { method = "GET", userpwd = "client:secret" }).headers.authorization)
    plain_get()
    assert.are.equal("2", send(s, { method = "GET", headers = { "X-Extra: 2" } }).headers["x-extra"])
    plain_get()
    s:close()
  end)

  it("takes each request's own timeout, and the session's after it", function()
    -- a listening socket nobody accepts from: connects, never answers
    local silent = require("cqueues.socket").listen { host = "127.0.0.1", port = 0 }
    assert(silent:listen())
    local _, _, port = silent:localname()
    local s = core.session { timeout = 1 }
    local function timed_out(spec)
      spec.url = "http://127.0.0.1:" .. port .. "/"
      local t0 = core.now()
      local request = s:start(spec)
      s:wait(request)
      local status, failure = request:result()
      assert.is_nil(status)
      assert.are.equal("CURLE_OPERATION_TIMEDOUT", failure.code)
      return core.now() - t0
    end
    assert.is_true(timed_out { method = "GET", timeout = 0.2 } < 0.9)
    send(s, { method = "GET" })
    assert.is_true(timed_out { method = "GET" } >= 0.9)   -- the session's 1 s, not the 0.2 s before
    s:close()
    silent:close()
  end)
end)
