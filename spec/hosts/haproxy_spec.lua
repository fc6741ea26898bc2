-- keyfactor.haproxy inside a real HAProxy 2.6 (Debian's haproxy, Lua 5.3),
-- one thread, the client in the shared Lua state (lua-load): calls from a
-- Lua service, a task and kf:parallel yield to HAProxy; a sample fetch
-- blocks and says so once.  The app is spec/hosts/app/haproxy_app.lua.
local host = require "hosts.host"
local behaviours = require "hosts.behaviours"

describe("keyfactor.haproxy in HAProxy (nbthread 1, lua-load)", function()
  behaviours.define(function(sb)
    host.build("lua5.3")
    return host.haproxy { url = sb.url, ca_file = sb.ca_file, username = sb.username,
                          password = sb.password, nbthread = 1 }
  end, {
    handler = "a Lua service", task = "a task", fallback = "a sample fetch",
    log_pattern = "keyfactor: a call made in a sample fetch",
  })
end)
