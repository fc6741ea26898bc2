-- The Keyfactor calls both test applications make (haproxy_app.lua inside
-- HAProxy on Lua 5.3, nginx_app.lua inside nginx on LuaJIT), answered as one
-- line of text for the spec or the benchmark to parse.
local clock = require("keyfactor.core").now

local calls = {}

--- kf:certificate(id): "id=<Id> ms=<elapsed> pid=<pid>" or "error=<err>".
function calls.certificate(kf, id, pid)
  local t0 = clock()
  local cert, err = kf:certificate(id)
  if not cert then return "error=" .. tostring(err) end
  return ("id=%s ms=%.3f pid=%s"):format(tostring(cert.Id), (clock() - t0) * 1000, tostring(pid))
end

--- kf:certificate(id) on a client that another host task closes while the
-- call waits: "kind=<err.kind> ms=<elapsed>", "id=<Id>" if it answered, or
-- "raised=<error>".
function calls.closed_while_waiting(kf, id)
  local t0 = clock()
  local ok, cert, err = pcall(kf.certificate, kf, id)
  if not ok then return "raised=" .. tostring(cert) end
  if cert then return "id=" .. tostring(cert.Id) end
  return ("kind=%s ms=%.3f"):format(tostring(err.kind), (clock() - t0) * 1000)
end

--- kf:parallel of `n` GETs of certificate `id` at concurrency `c`, the
-- first one for certificate `slow` if given: "ok=<right answers> of=<n> ms=<elapsed>".
function calls.parallel(kf, id, n, c, slow)
  n = n or 10
  local ids, fns = {}, {}
  for i = 1, n do
    ids[i] = (i == 1 and slow) or id
    fns[i] = function(k) return k:certificate(ids[i]) end
  end
  local t0 = clock()
  local values, errs = kf:parallel(fns, { concurrency = c or 16 })
  local ok = 0
  for i = 1, n do
    if not errs[i] and type(values[i]) == "table" and values[i].Id == ids[i] then ok = ok + 1 end
  end
  return ("ok=%d of=%d ms=%.3f"):format(ok, n, (clock() - t0) * 1000)
end

--- Iterates kf:certificates one certificate per page, at most `n`:
-- "items=<count> ms=<elapsed>" or "error=<err>".
function calls.pages(kf, n)
  local t0, count = clock(), 0
  local ok, err = pcall(function()
    for _ in kf:certificates { page_size = 1 } do
      count = count + 1
      if count >= n then break end
    end
  end)
  if not ok then return "error=" .. tostring(err) end
  return ("items=%d ms=%.3f"):format(count, (clock() - t0) * 1000)
end

return calls
