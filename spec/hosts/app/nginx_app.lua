-- The Keyfactor calls of spec/hosts and bench/hosts.lua inside nginx
-- (nginx.conf.in).  KF_MODE=attached (keyfactor.ngx) or blocking.
--   /call?id=N          content: kf:certificate(N)
--   /parallel?id=N&n=M  content: kf:parallel of M such calls
--   /spawn?id=N         a timer makes the call; /result its answer ("pending" before)
--   /fetch?id=N         set_by_lua makes the call (nginx cannot yield there)
-- Answers: "id=<Id> ms=<elapsed> pid=<worker pid>" or "error=<err>".
local keyfactor = require "keyfactor"
local kf_ngx = require "keyfactor.ngx"
local clock = require("keyfactor.core").now

local app = {}

local kf

--- init_by_lua, in the master: one client for every worker.  With
-- KF_WARM_ID the master also makes a call, so its pool holds a connection
-- when nginx forks.
function app.init()
  kf = keyfactor.new { url = os.getenv("KF_URL"), ca_file = os.getenv("KF_CA"),
    username = os.getenv("KF_USER"), password = os.getenv("KF_PASS"), retries = 0, timeout = 30 }
  if os.getenv("KF_MODE") ~= "blocking" then kf_ngx.attach(kf) end
  local warm = tonumber(os.getenv("KF_WARM_ID"))
  if warm then assert(kf:certificate(warm)) end
end

function app.answer(id)
  local t0 = clock()
  local cert, err = kf:certificate(id)
  if not cert then return "error=" .. tostring(err) end
  return ("id=%s ms=%.3f pid=%d"):format(tostring(cert.Id), (clock() - t0) * 1000, ngx.worker.pid())
end

function app.call() ngx.print(app.answer(tonumber(ngx.var.arg_id))) end

function app.parallel()
  local id, n = tonumber(ngx.var.arg_id), tonumber(ngx.var.arg_n) or 10
  local fns = {}
  for i = 1, n do fns[i] = function(k) return k:certificate(id) end end
  local t0 = clock()
  local values, errs = kf:parallel(fns, { concurrency = tonumber(ngx.var.arg_c) or 16 })
  local ok = 0
  for i = 1, n do
    if not errs[i] and type(values[i]) == "table" and values[i].Id == id then ok = ok + 1 end
  end
  ngx.print(("ok=%d of=%d ms=%.3f"):format(ok, n, (clock() - t0) * 1000))
end

function app.spawn()
  local id = tonumber(ngx.var.arg_id)
  ngx.shared.kf_result:set("last", "pending")
  assert(ngx.timer.at(0, function(premature)
    if not premature then ngx.shared.kf_result:set("last", app.answer(id)) end
  end))
  ngx.status = 202
  ngx.print("spawned")
end

function app.result() ngx.print(ngx.shared.kf_result:get("last") or "pending") end

return app
