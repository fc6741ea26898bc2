-- `keyfactor repl` through a real terminal: tmux runs it in a pane, the
-- spec types with send-keys and reads the screen with capture-pane.
-- Line editing and history, Tab completion, help, one-line results, and
-- Ctrl-C cancelling a line, a Lua loop and a call without ending the prompt.
local fixture = require "support.fixture"
local terminal = require "support.tmux"

local quote = terminal.quote

describe("keyfactor repl on a terminal", function()
  local sb, tmp, tmux
  local function screen() return tmux("capture-pane -p -J -S -200 -t repl") end
  local function keys(...)
    for i = 1, select("#", ...) do tmux("send-keys -t repl " .. select(i, ...)) end
  end
  -- Waits until the screen shows `pattern` (plain text) `times` times.
  local function await(text, times)
    local seen = fixture.poll(function()
      local s, n = screen(), 0
      for _ in s:gmatch(text:gsub("%p", "%%%0")) do n = n + 1 end
      return n >= (times or 1) and s
    end, 15, 0.1)
    assert(seen, "the screen never showed " .. text .. ":\n" .. screen())
    return seen
  end
  local function count(text)
    local n = 0
    for _ in screen():gmatch(text:gsub("%p", "%%%0")) do n = n + 1 end
    return n
  end

  fixture.live(function(s)
    sb = s
    tmp = os.tmpname()
    tmux = terminal.server("kfspec")
    local env = table.concat({
      "env -u LUA_PATH -u LUA_CPATH HOME=" .. quote(tmp .. ".home"), "TERM=xterm", terminal.credentials(sb),
    }, " ")
    os.execute("mkdir -p " .. quote(tmp .. ".home"))
    tmux("new-session -d -s repl -x 200 -y 60 " .. quote(env .. " bin/keyfactor repl; echo REPL-EXIT=$?; sleep 30"))
  end)
  lazy_teardown(function()
    if tmux then tmux:kill() end
    if tmp then os.execute("rm -rf " .. quote(tmp .. ".home")) os.remove(tmp) end
  end)

  it("edits lines with history, completes kf: methods and fields, prints one line, helps", function()
    await("kf> ")
    keys("'x = 41' Enter", "'x + 1' Enter")
    await("42")
    keys("Up Enter")                          -- history: x + 1 again
    await("42", 2)
    keys("'kf:certific' Tab")                 -- kf:certificate / kf:certificates
    await("kf:certificate")
    keys("C-u", "'kf:dep' Tab")
    await("kf> kf:deploy")
    keys("'{CertificateI' Tab")
    await("kf:deploy{CertificateId = ")
    keys("C-u", "kf Enter")
    local s = await("keyfactor.client(" .. sb.url)
    assert.is_nil(s:find("session =", 1, true), s)
    keys("'help \"deploy\"' Enter")
    s = await("POST /Enrollment/PFX/Deploy")
    assert.truthy(s:find("Stores", 1, true) and s:find("example:", 1, true), s)
    keys("'help(kf.renew)' Enter")
    await("POST /Enrollment/Renew")
    keys("'kf:store_types()' Enter")
    s = await("(show(_) for all)")
    assert.truthy(s:find("\n{ { BlueprintAllowed", 1, true), s)
    keys("'show(_)' Enter")
    await("    ShortName = \"PKCS12\",")
  end)

  it("prompts >> for unfinished input, names a misspelt method's near miss, completes a table's keys", function()
    await("kf> ")
    keys("C-l")
    tmux("clear-history -t repl")
    keys("'#kf:status' Enter")                -- unfinished: the call's parentheses are missing
    await("\n>> ")
    keys("'()' Enter")                        -- completes it, and it runs
    local s = await("\nkf> ")
    assert.truthy(s:find("\n>> %(%)\n%d+\nkf> "), s)
    assert.is_nil(s:find("syntax error", 1, true), s)
    keys("'kf:stauts()' Enter")
    s = await("kf:stauts is not a method (did you mean kf:status?)")
    assert.is_nil(s:find("attempt to call", 1, true), s)
    keys("'c = kf:certificate(kf:enroll{Template = \"WebServer\", Subject = \"CN=tab.example.com\", "
      .. "format = \"STORE\"}.CertificateInformation.KeyfactorId)' Enter")
    keys("'c.NotA' Tab")
    await("kf> c.NotAfter")
    keys("C-u", "'c.' Tab Tab")               -- every key of the certificate, no client method
    s = await("IssuedCN")
    assert.is_nil(s:find("wait_deployed", 1, true), s)
    keys("C-u", "'kf:wait_d' Tab")
    await("kf> kf:wait_deployed")
    keys("C-u")
  end)

  it("Ctrl-C cancels the line being typed, a running loop and a call, and the prompt goes on", function()
    await("kf> ")
    keys("C-l")                               -- a clean screen for this test
    tmux("clear-history -t repl")
    keys("'this line is dropped'")
    await("kf> this line is dropped")         -- read before the signal comes
    keys("C-c")
    await("^C")
    keys("'1 + 2' Enter")
    local s = await("\n3\n")
    assert.is_nil(s:find("syntax error", 1, true), s)
    keys("'print(\"looping\") while true do end' Enter")
    await("looping")
    keys("C-c")
    await("interrupted")
    assert(sb:fault { method = "GET", path = "/KeyfactorAPI/Status/Endpoints", delay_ms = 20000, times = 1 })
    keys("'print(\"calling\") return kf:status()' Enter")
    await("calling")
    keys("C-c")
    await("interrupted", 2)
    keys("'#kf:status() > 0' Enter")
    await("\ntrue\n")
    assert.are.equal(0, count("REPL-EXIT"))
    keys("C-d")
    await("REPL-EXIT=0")
  end)

  it("reads plain lines on a terminal when readline is missing", function()
    local dir = tmp .. ".noreadline"
    os.execute("mkdir -p " .. quote(dir))
    local f = assert(io.open(dir .. "/readline.lua", "w"))
    f:write('error("readline is not installed here")\n')
    f:close()
    tmux("new-session -d -s plain -x 120 -y 20 " .. quote(table.concat({
      "env LUA_PATH=" .. quote(dir .. "/?.lua;;"), "HOME=" .. quote(tmp .. ".home"), terminal.credentials(sb),
      "bin/keyfactor repl; echo PLAIN-EXIT=$?; sleep 30" }, " ")))
    local function plain() return tmux("capture-pane -p -J -t plain") end
    assert(fixture.poll(function() return plain():find("kf> ", 1, true) end, 15, 0.1), plain())
    tmux("send-keys -t plain '20 + 22' Enter")
    assert(fixture.poll(function() return plain():find("\n42\n", 1, true) end, 15, 0.1), plain())
    tmux("send-keys -t plain Up Enter")     -- no line editing: the escape sequence is read as text
    assert(fixture.poll(function() return plain():find("syntax error", 1, true) end, 15, 0.1), plain())
    tmux("send-keys -t plain C-d")
    assert(fixture.poll(function() return plain():find("PLAIN-EXIT=0", 1, true) end, 15, 0.1), plain())
    os.execute("rm -rf " .. quote(dir))
  end)
end)
