--- Background Keyfactor look-ups for nginx (lua-nginx-module, LuaJIT).
--
-- `kf_watch.start(dict)` is called from init_worker_by_lua_block.  One
-- worker (id 0) runs a timer that, every KF_WATCH_INTERVAL seconds (300),
-- logs in (kf:status()) and looks up the newest certificate issued to
-- KF_WATCH_CN, then stores a JSON summary in the lua_shared_dict for request
-- handlers to read.  The client is attached (keyfactor.ngx): while a call
-- waits, the timer sleeps in nginx and the worker keeps serving.
local keyfactor = require "keyfactor"
local kf_ngx = require "keyfactor.ngx"
local cjson = require "cjson.safe"

local kf_watch = {}

local CN = os.getenv("KF_WATCH_CN") or "shop.example.com"
local INTERVAL = tonumber(os.getenv("KF_WATCH_INTERVAL")) or 300

local kf          -- one client per worker: its connection pool is reused

local function refresh(dict)
  if not kf then
    -- attach: the timer yields to nginx while a call waits.
    kf = kf_ngx.attach(keyfactor.from_env { timeout = 15, connect_timeout = 5, retries = 1 })
  end
  local summary = { checked_at = ngx.utctime(), cn = CN }
  local endpoints, err = kf:status()
  if endpoints then
    summary.endpoints = #endpoints
    local cert
    cert, err = kf:certificate { IssuedCN = CN }
    if cert then
      summary.id, summary.serial, summary.not_after = cert.Id, cert.SerialNumber, cert.NotAfter
    end
  end
  if err then summary.error = tostring(err) end
  dict:set("summary", cjson.encode(summary))
  return summary
end

function kf_watch.start(dict)
  if ngx.worker.id() ~= 0 then return end
  local function tick(premature)
    if premature then return end         -- nginx is exiting or reloading
    local ok, result = pcall(refresh, dict)
    if not ok then
      dict:set("summary", cjson.encode { error = tostring(result), checked_at = ngx.utctime() })
      ngx.log(ngx.ERR, "keyfactor: ", tostring(result))
    elseif result.error then
      ngx.log(ngx.WARN, "keyfactor: ", result.error)
    else
      ngx.log(ngx.NOTICE, "keyfactor: certificate ", result.id, " valid until ", result.not_after)
    end
  end
  assert(ngx.timer.at(0, tick))
  assert(ngx.timer.every(INTERVAL, tick))
end

return kf_watch
