-- luacheck configuration for the whole tree.
std = "lua54"
max_line_length = 120
self = false              -- methods may ignore `self`
exclude_files = { "build/**" }
files["spec"] = { std = "+busted" }
files["lua/keyfactor/sandbox"] = { std = "+lua53" }
files["examples/haproxy"] = { std = "lua53", read_globals = { "core", "txn" } }   -- HAProxy's Lua API
files["examples/openresty"] = { std = "luajit+ngx_lua" }
-- The host specs' test applications run inside HAProxy (Lua 5.3) and nginx (LuaJIT).
files["spec/hosts/app/haproxy_app.lua"] = { std = "lua53", read_globals = { "core" } }
files["spec/hosts/app/haproxy_late_app.lua"] = { std = "lua53", read_globals = { "core" }, globals = { "late_jobs" } }
files["spec/hosts/app/nginx_app.lua"] = { std = "luajit+ngx_lua" }
