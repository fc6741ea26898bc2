--- A small Lua prompt for exploring a Keyfactor server.
--
--   local kf = keyfactor.from_env()
--   keyfactor.repl(kf)
--   kf> kf:certificate(42)
--   { CertState = 1, ... }
--   kf> kf:certificate(999)
--   nil, keyfactor: http 404 (0xA0110003) GET /Certificates/999: ...
--   kf> for c in kf:certificates{query = 'IssuedCN -contains "web"'} do print(c) end
--
-- Each line is compiled as `return <line>` first, then as `<line>`; an
-- unfinished statement reads more lines.  Results print through
-- keyfactor.show (secrets redacted).  Globals set at the prompt persist;
-- `kf`, `keyfactor`, `show` and `collect(iterator, n)` are preloaded.
-- Ends at end of input (Ctrl-D).
-- @module keyfactor.repl

local show = require "keyfactor.show"

local repl = {}

local load_env
local setfenv, loadstring = rawget(_G, "setfenv"), rawget(_G, "loadstring")
if setfenv then            -- Lua 5.1, LuaJIT
  load_env = function(code, name, env)
    local fn, err = loadstring(code, name)
    if fn then setfenv(fn, env) end
    return fn, err
  end
else
  load_env = function(code, name, env) return load(code, name, "t", env) end
end

local function pack(...) return { n = select("#", ...), ... } end

--- The array of the first `n` (default 100) items of an iterator such as
-- kf:certificates{...}.
function repl.collect(iterator, n)
  local items = {}
  for item in iterator do
    items[#items + 1] = item
    if #items >= (n or 100) then break end
  end
  return items
end

local function interactive()
  local ok = os.execute("test -t 0")
  return ok == true or ok == 0
end

--- Runs the prompt until end of input.
-- `opts`: input (a file, default io.stdin), output (default io.stdout),
-- prompt (default "kf> " when stdin is a terminal, else none), env (extra
-- globals).  Returns nothing.
function repl.run(kf, opts)
  opts = opts or {}
  local input, output = opts.input or io.stdin, opts.output or io.stdout
  local prompt = opts.prompt
  if prompt == nil then prompt = (input == io.stdin and interactive()) and "kf> " or "" end
  local env = setmetatable({ kf = kf, keyfactor = require "keyfactor", show = show.format,
                             collect = repl.collect }, { __index = _G })
  for k, value in pairs(opts.env or {}) do env[k] = value end

  local function emit(text) output:write(text, "\n") output:flush() end
  local function print_results(results)
    while results.n > 1 and results[results.n] == nil do results.n = results.n - 1 end
    if results.n == 0 then return end
    local texts = {}
    for i = 1, results.n do texts[i] = show.format(results[i]) end
    emit(table.concat(texts, ", "))
  end
  env.print = function(...)
    local texts = {}
    for i = 1, select("#", ...) do texts[i] = tostring((select(i, ...))) end
    emit(table.concat(texts, "\t"))
  end

  local pending = nil              -- lines of an unfinished statement
  while true do
    output:write(pending and (prompt ~= "" and ">>  " or "") or prompt)
    output:flush()
    local line = input:read("*l")
    if line == nil then break end
    local code = pending and pending .. "\n" .. line or line
    local fn, err = load_env("return " .. code, "=repl", env)
    if not fn then fn, err = load_env(code, "=repl", env) end
    if not fn and err:find("<eof>", 1, true) then
      pending = code                 -- incomplete: read on
    else
      pending = nil
      if not fn then
        emit("syntax error: " .. err)
      elseif code:find("%S") then
        local results = pack(xpcall(fn, function(e)
          return type(e) == "table" and e or tostring(e)
        end))
        if results[1] then
          local values = { n = results.n - 1 }
          for i = 2, results.n do values[i - 1] = results[i] end
          print_results(values)
        else
          emit("error: " .. tostring(results[2]))
        end
      end
    end
  end
  if pending then emit("syntax error: unfinished input at end") end
end

return repl
