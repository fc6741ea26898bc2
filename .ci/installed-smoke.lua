-- Run by `make rock-check` with only the luarocks tree on the paths: the
-- installed client talks to the installed sandbox.
local keyfactor = require "keyfactor"
local sb = require("keyfactor.sandbox").start { launcher = "keyfactor-sandbox" }
local kf = keyfactor.new { url = sb.url, ca_file = sb.ca_file, username = sb.username, password = sb.password }
local endpoints, err = kf:status()
sb:stop()
assert(endpoints, tostring(err))
print(("installed keyfactor %s: %d endpoints from the installed sandbox"):format(keyfactor.VERSION, #endpoints))
