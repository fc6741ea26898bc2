--- The live progress line of long fan-outs (`kf:parallel`).
--
-- Shown on stderr only when stderr is a terminal (so logs and pipes stay
-- clean), redrawn at most ten times a second:
--   keyfactor: 120/200 done, 2 failed, 41.3/s
-- @module keyfactor.parallel.progress

local core = require "keyfactor.core"

local progress = {}

--- A reporter `function(done, total, failed)` writing to `out` (io.stderr).
function progress.line(out)
  out = out or io.stderr
  local started, shown = core.now(), 0
  return function(done, total, failed)
    local now = core.now()
    if done < total and now - shown < 0.1 then return end
    shown = now
    local rate = done / math.max(now - started, 1e-3)
    out:write(string.format("\r\27[Kkeyfactor: %d/%d done, %d failed, %.1f/s", done, total, failed, rate))
    if done == total then out:write("\n") end
    out:flush()
  end
end

--- The reporter for `kf:parallel`'s `progress` option: true forces the line,
-- false turns it off, a function receives (done, total, failed), nil means
-- "on when stderr is a terminal and there is more than one function".
function progress.for_option(option, total)
  if type(option) == "function" then return option end
  if option == true or (option == nil and total > 1 and core.stderr_is_tty()) then
    return progress.line()
  end
  return nil
end

return progress
