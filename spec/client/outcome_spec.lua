-- keyfactor.outcome: the retry and idempotency rules, on failure records
-- as the C core makes them (no server needed).
local outcome = require "keyfactor.outcome"

local function record(fields)
  local r = { code = "CURLE_RECV_ERROR", message = "Failure when receiving data", sent = true,
              replayed = false, refused = false }
  for k, v in pairs(fields or {}) do r[k] = v end
  return r
end

describe("keyfactor.outcome", function()
  it("knows the idempotent methods", function()
    for _, m in ipairs { "GET", "HEAD", "PUT", "DELETE", "OPTIONS" } do assert.is_true(outcome.idempotent(m)) end
    for _, m in ipairs { "POST", "PATCH" } do assert.is_false(outcome.idempotent(m)) end
  end)

  it("never-sent failures are retryable for every method", function()
    for _, code in ipairs { "CURLE_COULDNT_CONNECT", "CURLE_COULDNT_RESOLVE_HOST" } do
      for _, m in ipairs { "GET", "POST", "PATCH" } do
        local f = outcome.failure(m, record { code = code, sent = false })
        assert.are.equal("transport", f.kind)
        assert.is_true(f.retryable, code .. " " .. m)
        assert.is_false(f.sent)
      end
    end
  end)

  it("a connection lost after sending: only idempotent methods retry", function()
    assert.is_true(outcome.failure("GET", record()).retryable)
    assert.is_true(outcome.failure("DELETE", record()).retryable)
    assert.is_false(outcome.failure("POST", record()).retryable)
    assert.is_false(outcome.failure("PATCH", record()).retryable)
  end)

  it("a replay libcurl wanted: GET at once, POST never over HTTP/1.1", function()
    local replay = record { code = "CURLE_ABORTED_BY_CALLBACK", replayed = true }
    local get = outcome.failure("GET", replay)
    assert.is_true(get.retryable)
    assert.is_true(get.retry_now)
    assert.are.equal(0, outcome.delay(1, get))
    local post = outcome.failure("POST", replay)
    assert.is_false(post.retryable)
    assert.is_true(post.sent)
  end)

  it("a refused HTTP/2 stream was never processed: the POST counts as not sent, and is retried", function()
    local f = outcome.failure("POST", record { code = "CURLE_ABORTED_BY_CALLBACK", replayed = true, refused = true })
    assert.is_false(f.sent)
    assert.is_true(f.retryable)
  end)

  it("limits, TLS and cancellation are never retried", function()
    for _, r in ipairs {
      record { code = "CURLE_WRITE_ERROR", limit = "headers", sent = false },
      record { code = "CURLE_OUT_OF_MEMORY", limit = "headers" },
      record { code = "CURLE_FILESIZE_EXCEEDED", limit = "body" },
      record { code = "CURLE_PEER_FAILED_VERIFICATION", sent = false },
      record { code = "canceled", sent = false },
    } do
      local f = outcome.failure("GET", r)
      assert.is_false(f.retryable, r.code)
    end
    assert.are.equal("tls", outcome.failure("GET", record { code = "CURLE_SSL_CONNECT_ERROR", sent = false }).kind)
    assert.are.equal("canceled", outcome.failure("GET", record { code = "canceled" }).kind)
  end)

  it("a timeout after sending is not retried; a connect timeout is", function()
    assert.is_false(outcome.failure("GET", record { code = "CURLE_OPERATION_TIMEDOUT" }).retryable)
    local connect = outcome.failure("POST", record { code = "CURLE_OPERATION_TIMEDOUT", sent = false })
    assert.are.equal("timeout", connect.kind)
    assert.is_true(connect.retryable)
  end)

  it("tells how to trust a server", function()
    local f = outcome.failure("GET", record { code = "CURLE_PEER_FAILED_VERIFICATION", sent = false,
      message = "SSL certificate problem: self-signed certificate in certificate chain" })
    assert.matches("ca_file or KEYFACTOR_CA_CERT", f.message)
  end)

  it("statuses: auth, http, retryable only for idempotent methods", function()
    assert.is_nil(outcome.status("GET", 200))
    assert.is_nil(outcome.status("POST", 204))
    assert.are.equal("auth", (outcome.status("GET", 401)))
    assert.are.equal("auth", (outcome.status("GET", 403)))
    for _, s in ipairs { 429, 502, 503, 504 } do
      assert.is_true(select(2, outcome.status("GET", s)))
      assert.is_false(select(2, outcome.status("POST", s)))
    end
    assert.is_false(select(2, outcome.status("GET", 500)))
    assert.are.equal("http", (outcome.status("GET", 404)))
  end)

  it("statuses: 429 and 503 did nothing (unprocessed), any other status below 500 is refused", function()
    for _, method in ipairs { "GET", "POST" } do
      for _, s in ipairs { 429, 503 } do
        local _, _, unprocessed, refused = outcome.status(method, s)
        assert.is_true(unprocessed, s)
        assert.is_false(refused, s)
      end
      for _, s in ipairs { 400, 401, 403, 404, 409, 422 } do
        local _, _, unprocessed, refused = outcome.status(method, s)
        assert.is_false(unprocessed, s)
        assert.is_true(refused, s)
      end
      for _, s in ipairs { 500, 502, 504 } do
        local _, _, unprocessed, refused = outcome.status(method, s)
        assert.is_false(unprocessed or refused, s)
      end
    end
  end)

  it("delays: Retry-After within 60 s, backoff jittered and capped", function()
    assert.are.equal(3, outcome.delay(1, { retry_after = 3 }))
    assert.are.equal(60, outcome.delay(1, { retry_after = 600 }))
    assert.are.equal(0.125, outcome.delay(1, {}, function() return 0 end))
    assert.are.equal(0.25, outcome.delay(1, {}, function() return 1 end))
    assert.are.equal(8, outcome.delay(30, {}, function() return 1 end))
    assert.are.equal(5, outcome.retry_after("5"))
    for _, bad in ipairs { "soon", "-1", "inf", "nan" } do assert.is_nil(outcome.retry_after(bad)) end
    assert.is_nil(outcome.retry_after(nil))
  end)
end)
