-- Shared by the examples: a client for a real Keyfactor Command when
-- KEYFACTOR_HOSTNAME is set (kfutil's variables, see keyfactor.from_env),
-- otherwise for a sandbox started here and stopped by the returned `done`
-- (as its admin, or as its operator when KF_SANDBOX_USER=operator).
local keyfactor = require "keyfactor"

return function(sandbox_opts)
  if os.getenv("KEYFACTOR_HOSTNAME") then
    local kf = keyfactor.from_env()
    return kf, function() kf:close() end, nil
  end
  local sb = require("keyfactor.sandbox").start(sandbox_opts or { job_delay = 0.5 })
  local operator = os.getenv("KF_SANDBOX_USER") == "operator"
  local kf = keyfactor.new { url = sb.url, ca_file = sb.ca_file,
                             username = operator and sb.operator_username or sb.username,
                             password = operator and sb.operator_password or sb.password }
  io.stderr:write("sandbox: ", sb.url, "\n")
  return kf, function() kf:close(); sb:stop() end, sb
end
