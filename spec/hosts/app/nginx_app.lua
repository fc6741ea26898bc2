-- The Keyfactor calls of spec/hosts and bench/hosts.lua inside nginx
-- (nginx.conf.in).  KF_MODE=attached (keyfactor.ngx) or blocking.
--   /call?id=N          content: kf:certificate(N)
--   /parallel?id=N&n=M[&c=C][&slow=S]  content: kf:parallel of M such calls
--                       (at concurrency C; the first for certificate S)
--   /pages?n=N          content: kf:certificates, one per page, N items
--   /close?id=N         content: kf:certificate(N) on its own client, which a
--                       timer closes 0.3 s later
--   /spawn?id=N         a timer makes the call; /result its answer ("pending" before)
--   /fetch?id=N         set_by_lua makes the call (nginx cannot yield there)
-- Answers: see calls.lua.
local keyfactor = require "keyfactor"
local kf_ngx = require "keyfactor.ngx"
local calls = require "calls"

local app = {}

local kf, options

--- init_by_lua, in the master: one client for every worker.  With
-- KF_WARM_ID the master also makes a call, so its pool holds a connection
-- when nginx forks.
function app.init()
  options = { url = os.getenv("KF_URL"), ca_file = os.getenv("KF_CA"),
    username = os.getenv("KF_USER"), password = os.getenv("KF_PASS"), retries = 1, timeout = 30 }
  kf = keyfactor.new(options)
  if os.getenv("KF_MODE") ~= "blocking" then kf_ngx.attach(kf) end
  local warm = tonumber(os.getenv("KF_WARM_ID"))
  if warm then assert(kf:certificate(warm)) end
end

function app.answer(id) return calls.certificate(kf, id, ngx.worker.pid()) end

function app.call() ngx.print(app.answer(tonumber(ngx.var.arg_id))) end

function app.parallel()
  local arg = ngx.var
  ngx.print(calls.parallel(kf, tonumber(arg.arg_id), tonumber(arg.arg_n), tonumber(arg.arg_c),
    tonumber(arg.arg_slow)))
end

function app.pages() ngx.print(calls.pages(kf, tonumber(ngx.var.arg_n) or 3)) end

function app.close()
  local own = kf_ngx.attach(keyfactor.new(options))
  assert(ngx.timer.at(0.3, function() own:close() end))
  ngx.print(calls.closed_while_waiting(own, tonumber(ngx.var.arg_id)))
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
