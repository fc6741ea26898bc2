-- Hostile request framing (issue 16 items 1-3): a malformed Content-Length,
-- bodies over the 16 MiB limit with and without chunking. Each gets its
-- answer and the sandbox keeps serving with bounded memory.
local sandbox = require "keyfactor.sandbox"
local raw_tls = require "support.raw_tls"

describe("sandbox against hostile request bodies", function()
  local sb, port, big

  lazy_setup(function()
    sb = sandbox.start{ port = 0 }
    port = tonumber(sb.base:match(":(%d+)$"))
    big = os.tmpname()
    assert(os.execute("head -c 20000000 /dev/zero | tr '\\0' 'x' > " .. big))
  end)
  lazy_teardown(function()
    if sb then sb:stop() end
    if big then os.remove(big) end
  end)

  -- curl with a time limit: a wedged sandbox fails the spec instead of hanging it.
  local function curl(args, feed)
    local p = assert(io.popen(string.format((feed and feed .. " | " or "")
      .. "env -u LD_PRELOAD curl -s -o /dev/null -w '%%{http_code}' "
      .. "-m 30 --cacert %s -u 'SANDBOX\\admin:sandbox-admin' -H 'x-keyfactor-requested-with: spec' "
      .. "-H 'Content-Type: application/json' %s", sb.ca_file, args)))
    local code = p:read("a")
    p:close()
    return tonumber(code)
  end

  local function still_serving()
    assert.equals(200, curl("-m 10 " .. sb.url .. "/Status/Endpoints"))
  end

  local function peak_rss_kb()
    local f = assert(io.open("/proc/" .. sb.pid .. "/status"))
    local kb = tonumber(f:read("a"):match("VmHWM:%s*(%d+)"))
    f:close()
    return kb
  end

  it("answers 400 to a malformed Content-Length and keeps serving", function()
    for _, value in ipairs{ "abc", "1x", "-5" } do
      local line = raw_tls.status_line(port, "POST /KeyfactorAPI/Certificates/Revoke HTTP/1.1\r\nHost: x\r\n"
        .. "Content-Length: " .. value .. "\r\n\r\n")
      assert.matches("^HTTP/1.1 400", line)
    end
    still_serving()
  end)

  it("answers 413 to a 20 MB body sent without Expect, try after try", function()
    for _ = 1, 3 do
      assert.equals(413, curl("-H 'Expect:' --data-binary @" .. big .. " " .. sb.url .. "/Certificates/Revoke"))
      still_serving()
    end
  end)

  it("refuses a 1 GB chunked body while reading it, with bounded memory", function()
    local code = curl("-H 'Transfer-Encoding: chunked' -X POST -T - " .. sb.url .. "/Certificates/Revoke",
      "head -c 1000000000 /dev/zero")
    -- curl stops sending when the sandbox answers and hangs up
    assert.is_true(code == 413 or code == 0, "status " .. tostring(code))
    still_serving()
    -- the limit is 16 MiB; before the fix the peak was 2.9 GB
    assert.is_true(peak_rss_kb() < 150 * 1024, "peak RSS " .. peak_rss_kb() .. " kB")
  end)

  it("refuses a single chunk declared larger than the limit before buffering it", function()
    local line = raw_tls.status_line(port, "POST /KeyfactorAPI/Certificates/Revoke HTTP/1.1\r\nHost: x\r\n"
      .. "Transfer-Encoding: chunked\r\n\r\n40000000\r\n" .. string.rep("x", 1000))
    assert.matches("^HTTP/1.1 413", line)
    still_serving()
  end)
end)
