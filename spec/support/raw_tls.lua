-- A raw TLS client for the sandbox's specs: request text exactly as given
-- (malformed framing, half-sent bodies), which no HTTP client sends.
local socket = require "cqueues.socket"
local ssl_context = require "openssl.ssl.context"

local raw_tls = {}

--- Sends `head` to 127.0.0.1:`port` over TLS (unverified) and returns the
-- status line of the answer. `hang_up`: close the write side after sending.
function raw_tls.status_line(port, head, hang_up)
  local s = assert(socket.connect{ host = "127.0.0.1", port = port })
  s:setmode("b", "b")
  assert(s:connect(5))
  local ctx = ssl_context.new("TLS", false)
  ctx:setVerify(ssl_context.VERIFY_NONE)
  assert(s:starttls(ctx, 5))
  assert(s:write(head))
  assert(s:flush())
  if hang_up then s:shutdown("w") end
  local line = s:read("*l", 10)
  s:close()
  return line
end

return raw_tls
