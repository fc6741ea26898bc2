-- The REPL's history file on a real terminal (tmux, as terminal_spec.lua):
-- created 0600 or tightened to it, and no line that sets a password, a
-- client_secret or a token is ever written to it (nor recalled).
local fixture = require "support.fixture"
local repl = require "keyfactor.repl"
local terminal = require "support.tmux"

local quote = terminal.quote

local read = require("support.files").read

local function mode(path)
  local p = io.popen("stat -c %a " .. quote(path))
  local m = p:read("l")
  p:close()
  return m
end

describe("keyfactor repl history", function()
  it("knows a line that sets a secret, in any assignment form and case", function()
    for _, line in ipairs {
      'kf:deploy{CertificateId = 7, Password = "pw"}', 'p = {password="pw"}', 'PASSWORD = "pw"',
      'o = {["client_secret"] = "s"}', "kf = keyfactor.new{url = u, token = t}", 'cfg.Token="t"',
      "access_token: xyz", 'os.setenv and KEYFACTOR_PASSWORD = "pw"',
    } do
      assert.is_true(repl.carries_secret(line), line)
    end
    for _, line in ipairs { "x = 1", "kf:certificate(42)", "if token == nil then end", "tokens = 3",
                            "help 'deploy'" } do
      assert.is_false(repl.carries_secret(line), line)
    end
  end)

  describe("on a terminal", function()
    local sb, home, tmux

    fixture.live(function(s)
      sb = s
      home = os.tmpname() .. ".home"
      os.execute("mkdir -p " .. quote(home))
      tmux = terminal.server("kfhist")
    end)
    lazy_teardown(function()
      if tmux then tmux:kill() end
      if home then os.execute("rm -rf " .. quote(home)) end
    end)

    -- Runs the REPL in session `name` with `env`, types `lines`, then Ctrl-D.
    local function session(name, env, lines)
      tmux("new-session -d -s " .. name .. " -x 200 -y 40 " .. quote(table.concat({
        "env -u LUA_PATH -u LUA_CPATH HOME=" .. quote(home), "TERM=xterm", env, terminal.credentials(sb),
        "bin/keyfactor repl; echo REPL-EXIT=$?; sleep 30" }, " ")))
      local function screen() return tmux("capture-pane -p -J -S -100 -t " .. name) end
      assert(fixture.poll(function() return screen():find("kf> ", 1, true) end, 15, 0.1), screen())
      for _, line in ipairs(lines) do tmux("send-keys -t " .. name .. " " .. quote(line) .. " Enter") end
      -- Up twice: the line before the last kept one; a secret line is not recalled
      tmux("send-keys -t " .. name .. " Up Up")
      assert(fixture.poll(function() return screen():find("kf> x = 41\n", 1, true) end, 15, 0.1), screen())
      tmux("send-keys -t " .. name .. " C-u C-d")
      assert(fixture.poll(function() return screen():find("REPL-EXIT=0", 1, true) end, 15, 0.1), screen())
    end

    local TYPED = { "x = 41", 'pw = {Password = "hunter2-pw"}', 'o = {["client_secret"] = "cs-value"}',
      'TOKEN = "tok-value"', "y = x + 1" }

    local function assert_clean(text)
      assert.is_truthy(text, "no history file")
      assert.truthy(text:find("x = 41", 1, true), text)
      assert.truthy(text:find("y = x + 1", 1, true), text)
      for _, secret in ipairs { "hunter2-pw", "cs-value", "tok-value" } do
        assert.is_nil(text:find(secret, 1, true), text)
      end
    end

    it("creates ~/.keyfactor_history 0600 and writes no secret line", function()
      session("fresh", "", TYPED)
      local path = home .. "/.keyfactor_history"
      assert.are.equal("600", mode(path))
      assert_clean(read(path))
    end)

    it("tightens an existing $KEYFACTOR_HISTORY to 0600", function()
      local path = home .. "/shared_history"
      local f = assert(io.open(path, "w"))
      f:write("old = 1\n")
      f:close()
      os.execute("chmod 644 " .. quote(path))
      session("existing", "KEYFACTOR_HISTORY=" .. quote(path), TYPED)
      assert.are.equal("600", mode(path))
      local text = read(path)
      assert_clean(text)
      assert.truthy(text:find("old = 1", 1, true), text)
    end)
  end)
end)
