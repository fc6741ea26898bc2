--- Driving the client from inside nginx (lua-nginx-module, OpenResty).
--
--   init_by_lua_block {
--     kf = require("keyfactor.ngx").attach(require("keyfactor").from_env())
--   }
--   content_by_lua_block { local cert = kf:certificate(42) ... }   -- yields, never blocks
--
-- Once attached, a `kf:` call made where nginx lets Lua sleep (rewrite,
-- access, content, ngx.timer, ssl_certificate, ...) waits with `ngx.sleep`
-- (adaptive polling: ~1 ms, longer while nothing completes), so the worker
-- keeps serving meanwhile.  Where `ngx.sleep` is not allowed (init,
-- init_worker, set, header and body filters, log, balancer) the call blocks
-- the worker, and says so once in the error log.
--
-- A client created in init_by_lua (in the master) may be used by every
-- worker: the C session notices it runs in a new process and opens its own
-- connections there.  Make no Keyfactor call before nginx forks, though:
-- the master would wait for it at start-up.
-- @module keyfactor.ngx

local driver = require "keyfactor.driver"

local kf_ngx = {}

local ngx = _G.ngx

-- The phases (ngx.get_phase()) where ngx.sleep yields to nginx.
local YIELDING = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
  preread = true,                                   -- stream module
}

--- True when ngx.sleep may yield in the current phase.
function kf_ngx.can_yield()
  return YIELDING[ngx.get_phase()] == true
end

--- Makes `kf` yield to nginx while it waits.  Returns `kf`.
function kf_ngx.attach(kf)
  local warned_in          -- the process that logged (each worker logs once)
  kf:set_driver(driver.polling {
    name = "ngx",
    sleep = function(seconds) ngx.sleep(seconds) end,
    active = function()
      if kf_ngx.can_yield() then return true end
      if warned_in ~= ngx.worker.pid() then
        warned_in = ngx.worker.pid()
        ngx.log(ngx.WARN, "keyfactor: a call made in the ", ngx.get_phase(), " phase blocks this nginx",
          " worker until it completes (ngx.sleep is not allowed there); make Keyfactor calls from",
          " rewrite, access, content or a timer")
      end
      return false
    end,
  })
  return kf
end

return kf_ngx
