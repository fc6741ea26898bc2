--- A Lua prompt for exploring a Keyfactor server: `keyfactor repl`.
--
--     kf> kf:certificate(42)
--     certificate 42 CN=web1.example.com (expires 2027-11-25, active)
--     kf> show(_)                    -- the whole of the last result
--     kf> help "deploy"              -- endpoint, fields, example (or help(kf.deploy))
--     kf> kf:dep<Tab>                -- completes kf: methods, and field names inside kf:deploy{...}
--     kf> c = kf:certificate(42)
--     kf> c.Not<Tab>                 -- completes a table's keys: c.NotAfter, c.NotBefore
--
-- On a terminal the line is edited with GNU readline (Debian lua-readline),
-- with history in `~/.keyfactor_history` (or `$KEYFACTOR_HISTORY`; mode
-- 0600, and a line that sets a password, client_secret or token is never
-- kept in it); Ctrl-C
-- cancels the line being typed or the call running (cqueues' signal
-- listener), Ctrl-D ends.  Without readline, or when stdin is not a
-- terminal, lines are read plainly.  Each line is compiled as
-- `return <line>` first, then as `<line>`; an unfinished statement reads
-- more lines after a `>> ` prompt, as `lua -i` does.  A misspelt method
-- (`kf:stauts()`) is named with its near miss (`did you mean kf:status?`).
-- Results print on one line (secrets redacted); `_` is the last result.
-- Globals set at the prompt persist; `kf`, `keyfactor`, `show`, `help` and
-- `collect(iterator, n)` are preloaded.
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

local function catalog()
  local ok, endpoints = pcall(require, "keyfactor.api.endpoints")
  return ok and endpoints or nil
end

--- The array of the first `n` items of an iterator.
-- @param iterator an iterator such as `kf:certificates{...}`
-- @tparam[opt=100] integer n how many items at most
-- @treturn table the array of items
function repl.collect(iterator, n)
  local items = {}
  for item in iterator do
    items[#items + 1] = item
    if #items >= (n or 100) then break end
  end
  return items
end

local ONE_LINE = { width = 1e9, max_items = 6, max_string = 48, max_depth = 3 }
local WIDTH = 160

--- One line of text for a result: certificates and stores as their summary
-- line, tables cut; `show(_)` prints the whole.
-- @param value any answer
-- @treturn string
function repl.one_line(value)
  if type(value) ~= "table" then return show.format(value) end
  local mt = getmetatable(value)
  if type(value) == "table" and type(mt) == "table" and mt.__tostring then return tostring(value) end
  if type(value) == "table" and value.Thumbprint ~= nil and value.IssuedDN ~= nil then
    return show.describe_certificate(value)
  end
  if type(value) == "table" and value.ClientMachine ~= nil and value.StorePath ~= nil then
    return show.describe_store(value)
  end
  local text = show.format(value, ONE_LINE):gsub("\n%s*", " ")
  if #text > WIDTH then text = text:sub(1, WIDTH - 30) .. " ... (show(_) for all)" end
  return text
end

--- The help text of a call: its endpoint, fields, answer and example.
-- @param kf the client (to recognise its methods)
-- @param what a name (`"deploy"`, `"kf:deploy"`), a method (`kf.deploy`), or nil for the list of calls
-- @treturn string
function repl.help(kf, what)
  local endpoints = catalog()
  if not endpoints then return "help needs keyfactor.api.endpoints" end
  local entry
  if type(what) == "string" then
    entry = endpoints.get((what:gsub("^kf[:.]", "")))
  elseif type(what) == "function" and kf then
    for _, e in ipairs(endpoints.list()) do
      if kf[e.name] == what then entry = e end
    end
  elseif what == nil then
    local out, group = { "calls (help \"name\" for one):" }, nil
    for _, e in ipairs(endpoints.list()) do
      if e.group ~= group then
        group = e.group
        out[#out + 1] = "  " .. tostring(group)
      end
      out[#out + 1] = string.format("    kf:%-22s %s", e.name, e.summary or "")
    end
    return table.concat(out, "\n")
  end
  if not entry then return "no call named " .. tostring(what) .. " (help() lists them)" end
  local out = { string.format("%s -- %s", endpoints.call_text(entry), entry.summary or "") }
  if entry.method and entry.path then out[#out + 1] = "  " .. entry.method .. " " .. entry.path end
  if entry.params and #entry.params > 0 then
    out[#out + 1] = "  fields:"
    for _, p in ipairs(entry.params) do
      out[#out + 1] = string.format("    %-24s %-26s %s%s", p.name, tostring(p.type or ""),
        p.required and "(required) " or "", p.doc or "")
    end
  end
  if entry.returns then out[#out + 1] = "  returns: " .. entry.returns end
  if entry.example then out[#out + 1] = "  example:\n    " .. entry.example:gsub("\n", "\n    ") end
  return table.concat(out, "\n")
end

-- The value a dotted name (`c`, `c.CertificateInformation`) has at the
-- prompt, or nil; never calls anything but plain table lookups.
local function resolve(env, dotted)
  local value = env
  for part in dotted:gmatch("[^.]+") do
    if type(value) ~= "table" then return nil end
    value = value[part]
  end
  return value
end

-- The names `value:` (functions) or `value.` (every string key) may be
-- followed by: the table's own keys, those of its metatable's __index
-- table, and for the client every call of the endpoint table.
local function members(value, methods_only, endpoints)
  local names, seen = {}, {}
  local function add(n, item)
    if type(n) == "string" and not seen[n] and not n:find("^_") and n:find("^[%a_][%w_]*$")
      and (not methods_only or type(item) == "function") then
      seen[n] = true
      names[#names + 1] = n
    end
  end
  if type(value) ~= "table" then return names end
  for n, item in pairs(value) do add(n, item) end
  local mt = getmetatable(value)
  if type(mt) == "table" and type(mt.__index) == "table" then
    for n, item in pairs(mt.__index) do add(n, item) end
    if mt.__name == "keyfactor.client" and endpoints then
      for _, e in ipairs(endpoints.list()) do add(e.name, function() end) end
    end
  end
  table.sort(names)
  return names
end

-- Tab completion: after `name:` the methods of that value (the kf: calls
-- for the client), after `name.` the keys of that table (a certificate's
-- fields), field names inside `kf:name{`, and globals of the prompt.
local function completer(env)
  local endpoints = catalog()
  return function(line, from, to)
    local word = line:sub(from, to)
    local before = line:sub(1, from - 1)
    local matches = {}
    local object, sep, prefix = word:match("^([%a_][%w_%.]*)([:.])([%w_]*)$")
    local value = object and resolve(env, object)
    if type(value) == "table" then
      for _, n in ipairs(members(value, sep == ":", endpoints)) do
        if n:sub(1, #prefix) == prefix then matches[#matches + 1] = object .. sep .. n end
      end
      return matches
    end
    local call = before:match("kf[:.]([%w_]+)%s*%(?%s*{[^}]*$")
    local entry = call and endpoints and endpoints.get(call)
    if entry then
      for _, p in ipairs(entry.params or {}) do
        if p.name:sub(1, #word) == word then matches[#matches + 1] = p.name .. " = " end
      end
      return matches
    end
    for name in pairs(env) do
      if type(name) == "string" and name:sub(1, #word) == word then matches[#matches + 1] = name end
    end
    table.sort(matches)
    return matches
  end
end

-- "attempt to call a nil value (method 'stauts')" said as what it means,
-- with the near miss among the receiver's methods (found in the line typed:
-- `kf:stauts()` -> kf's methods), as validation names an unknown field.
local function explain_missing(message, code, env)
  local kind, name = tostring(message):match("attempt to call a nil value %((%a+) '([%w_]+)'%)")
  if kind ~= "method" and kind ~= "field" then return message end
  local sep = kind == "method" and ":" or "."
  local receiver = code:match("([%a_][%w_%.]*)%s*" .. sep:gsub("%p", "%%%0") .. "%s*" .. name .. "%f[^%w_]")
  local value = receiver and resolve(env, receiver)
  if type(value) ~= "table" then return message end
  local known = {}
  for _, n in ipairs(members(value, true, catalog())) do known[n] = true end
  local near = require("keyfactor.api.validate").near_miss(name, known)
  return string.format("%s%s%s is not a method%s", receiver, sep, name,
    near and " (did you mean " .. receiver .. sep .. near .. "?)" or "")
end

local function interactive()
  local ok = os.execute("test -t 0")
  return ok == true or ok == 0
end

-- Ctrl-C: SIGINT is blocked and read from cqueues' signal listener, so it
-- never kills the process; `interrupts.pending()` says whether one came.
local function interrupts()
  local ok, signal = pcall(require, "cqueues.signal")
  if not ok then return nil end
  signal.block(signal.SIGINT)
  local listener = signal.listen(signal.SIGINT)
  return {
    listener = listener,
    pending = function() return listener:wait(0) ~= nil end,
    stop = function() signal.unblock(signal.SIGINT) end,
  }
end

-- While a line runs: a call waits in short steps and a count hook watches
-- Lua loops; either raises "interrupted" on Ctrl-C.
local INTERRUPTED = setmetatable({}, { __tostring = function() return "interrupted" end })
local function cancellable(kf, sig)
  local function check() if sig.pending() then error(INTERRUPTED, 0) end end
  -- a single call: its request is cancelled, so nothing is left in flight
  local function wait(session, request)
    while not request:done() do
      if sig.pending() then request:cancel() error(INTERRUPTED, 0) end
      session:step(0.1)
    end
  end
  local http = type(kf) == "table" and rawget(kf, "http")
  if http and type(kf.set_driver) == "function" then   -- a client with drivers (keyfactor.driver)
    local now, nap = require("keyfactor.core").now, require("keyfactor.driver").block
    kf:set_driver {
      name = "repl",
      active = function() return true end,
      wait = function(_, session, request) return wait(session, request) end,
      poll = function(_, session, timeout)       -- kf:parallel and the like
        check()
        return (session:step(math.min(timeout, 0.1)))
      end,
      sleep = function(_, seconds)               -- retry backoff, wait_deployed intervals
        local deadline = now() + seconds
        repeat
          check()
          nap:sleep(math.max(0, math.min(0.1, deadline - now())))
        until now() >= deadline
      end,
    }
  elseif http then
    http.waiter = wait
  end
  return function(on)
    if on then debug.sethook(check, "", 100000) else debug.sethook() end
  end
end

-- Line input: plain reads, or GNU readline's callback interface on a
-- terminal.  `feed(line)` evaluates each line; `prompt()` names the prompt.
local function plain_loop(input, output, prompt, feed)
  while true do
    output:write(prompt())
    output:flush()
    local line = input:read("*l")
    if line == nil then return end
    feed(line)
  end
end

-- ---- history ----------------------------------------------------------------

-- Names whose value is a secret; a line that gives one a value (`Password =`,
-- `["client_secret"] =`, `token:`, in any case) is kept out of the history.
local SECRET_NAMES = { "password", "client_secret", "token" }

--- True when `line` assigns one of the secret names (so it must not be
-- saved in the history file).
function repl.carries_secret(line)
  local lower = line:lower()
  for _, name in ipairs(SECRET_NAMES) do
    local from = 1
    while true do
      local _, last = lower:find(name .. "[\"'%]%s]*[=:]", from)
      if not last then break end
      if lower:sub(last, last + 1) ~= "==" then return true end   -- a comparison is no secret
      from = last + 1
    end
  end
  return false
end

-- The history file, created 0600 (or tightened to it) before readline reads
-- or appends to it: it holds what was typed at a prompt talking to a CA.
local function private_history_file()
  local path = os.getenv("KEYFACTOR_HISTORY") or ((os.getenv("HOME") or ".") .. "/.keyfactor_history")
  local quoted = "'" .. path:gsub("'", "'\\''") .. "'"
  os.execute("(umask 077 && touch -- " .. quoted .. " && chmod 600 -- " .. quoted .. ") 2>/dev/null")
  return path
end

-- Lines are evaluated inside readline's line handler, and the handler is
-- installed once: lua-readline's handler_remove closes its terminal stream
-- before readline's own clean-up writes to it (a use after free that
-- crashed one run in a few), so it is never called.  Ctrl-C installs the
-- handler afresh, which starts an empty line (and leaves one stream of
-- lua-readline's open); at the end the terminal is restored with stty.
local function readline_loop(rl, sig, output, prompt, feed)
  local cqueues = require "cqueues"
  local stdin = { pollfd = function() return 0 end, events = function() return "r" end }
  local finished = false
  local shown = prompt()
  local handler
  function handler(line)
    if line == nil then finished = true return end
    if line:find("%S") and not repl.carries_secret(line) then rl.add_history(line) end
    feed(line)
    -- the continuation prompt (">> ") while a statement is unfinished:
    -- readline shows the prompt it was installed with, so install anew
    -- when it changes (allowed inside the line handler)
    if prompt() ~= shown then
      shown = prompt()
      rl.handler_install(shown, handler)
    end
  end
  rl.handler_install(shown, handler)
  while not finished do
    local ready = cqueues.poll(stdin, sig.listener)
    if ready == sig.listener and sig.pending() then
      output:write("^C\n")
      if rl.sigcleanup then rl.sigcleanup() end   -- what readline's own SIGINT handler does
      feed(nil)                                    -- drops an unfinished statement
      shown = prompt()
      rl.handler_install(shown, handler)           -- a fresh, empty line
    elseif ready == stdin then
      rl.read_char()
    end
  end
  output:write("\27[?2004l\n")                    -- bracketed paste off, as readline would
  output:flush()
  os.execute("stty sane 2>/dev/null")
  rl.save_history()
end

--- Runs the prompt until end of input.
-- @param kf the client, global `kf` at the prompt
-- @tparam[opt] table opts `input` (a file, default io.stdin), `output` (default io.stdout),
-- `prompt` (default "kf> " when stdin is a terminal, else none), `env` (extra
-- globals), `readline` (false: never use it)
function repl.run(kf, opts)
  opts = opts or {}
  local input, output = opts.input or io.stdin, opts.output or io.stdout
  local tty = input == io.stdin and interactive()
  local prompt = opts.prompt
  if prompt == nil then prompt = tty and "kf> " or "" end

  local function emit(text) output:write(text, "\n") output:flush() end
  local env = setmetatable({ kf = kf, keyfactor = require "keyfactor", collect = repl.collect },
                           { __index = _G })
  env.show = function(...)
    for i = 1, select("#", ...) do emit(show.format((select(i, ...)))) end
  end
  env.help = function(what) emit(repl.help(kf, what)) end
  env.print = function(...)
    local texts = {}
    for i = 1, select("#", ...) do texts[i] = tostring((select(i, ...))) end
    emit(table.concat(texts, "\t"))
  end
  for k, value in pairs(opts.env or {}) do env[k] = value end

  local sig, rl = nil, nil
  if tty and opts.readline ~= false then
    local ok, readline = pcall(require, "readline")
    sig = ok and interrupts()
    if sig then
      rl = readline
      rl.set_options { histfile = private_history_file(), completion = true }
      rl.set_readline_name("keyfactor")
      local complete = completer(env)
      rl.set_complete_function(function(...)
        rl.set_completion_append_character("")     -- readline resets it to " " each time
        return complete(...)
      end)
    end
  end
  local watch = sig and cancellable(kf, sig) or function() end

  local function print_results(results)
    while results.n > 1 and results[results.n] == nil do results.n = results.n - 1 end
    if results.n == 0 then return end
    env._ = results[1]
    local texts = {}
    for i = 1, results.n do texts[i] = repl.one_line(results[i]) end
    emit(table.concat(texts, ", "))
  end

  local pending = nil              -- lines of an unfinished statement
  local function feed(line)
    if line == nil then pending = nil return end
    local code = pending and pending .. "\n" .. line or line
    local fn, err = load_env("return " .. code, "=repl", env)
    local unfinished = not fn and err:find("<eof>", 1, true)   -- `#kf:status` is an unfinished expression
    if not fn then fn, err = load_env(code, "=repl", env) end
    if not fn and (unfinished or err:find("<eof>", 1, true)) then
      pending = code                 -- incomplete: read on
      return
    end
    pending = nil
    if not fn then return emit("syntax error: " .. err) end
    if not code:find("%S") then return end
    watch(true)
    local results = pack(xpcall(fn, function(e)
      return type(e) == "table" and e or tostring(e)
    end))
    watch(false)
    if results[1] then
      local values = { n = results.n - 1 }
      for i = 2, results.n do values[i - 1] = results[i] end
      print_results(values)
    elseif results[2] == INTERRUPTED then
      emit("\ninterrupted")          -- after the "^C" the terminal echoed
    else
      emit("error: " .. tostring(explain_missing(results[2], code, env)))
    end
  end
  local function current_prompt()
    return pending and (prompt ~= "" and ">> " or "") or prompt   -- as lua -i
  end

  if rl then
    readline_loop(rl, sig, output, current_prompt, feed)
  else
    plain_loop(input, output, current_prompt, feed)
  end
  if pending then emit("syntax error: unfinished input at end") end
  if sig then sig.stop() end
end

return repl
