-- A private tmux server for the REPL's terminal specs: the spec runs
-- `bin/keyfactor repl` in a pane, types with send-keys and reads the screen
-- with capture-pane.
--   local tmux = require "support.tmux"
--   local server = tmux.server("kfspec")          -- server("send-keys -t repl Enter"), server:kill()
--   tmux.quote(s), tmux.credentials(sb)
local tmux = {}

--- `s` quoted for the shell.
function tmux.quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local quote = tmux.quote

--- A tmux server on its own socket (named `prefix` and a random tail), so
-- that a spec never meets the user's sessions nor another spec's.  Calling
-- it runs one tmux command on that server and returns its output.
function tmux.server(prefix)
  local socket = prefix .. tostring(os.time()) .. tostring(math.random(1e6))
  local function run(_, args)
    local p = io.popen("tmux -L " .. socket .. " " .. args .. " 2>&1")
    local out = p:read("a")
    p:close()
    return out
  end
  return setmetatable({ kill = function(self) run(self, "kill-server") end }, { __call = run })
end

--- The KEYFACTOR_* assignments (shell words) that point the REPL at sandbox `sb`.
function tmux.credentials(sb)
  local port = sb.url:match("^https://[^:/]+:(%d+)")
  return table.concat({
    "KEYFACTOR_HOSTNAME=" .. quote("127.0.0.1:" .. port), "KEYFACTOR_USERNAME=" .. quote(sb.username),
    "KEYFACTOR_PASSWORD=" .. quote(sb.password), "KEYFACTOR_CA_CERT=" .. quote(sb.ca_file),
  }, " ")
end

return tmux
