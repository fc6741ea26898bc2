-- The sandbox's data directory (--data DIR, or a fresh temporary one): mode
-- 0700 with every file in it 0600 (ca-key.pem and state.json hold private
-- keys), held by one sandbox at a time, and the keyfactor.env file that
-- takes a user from the sandbox to a client in one step.
local lfs = require "lfs"
local util = require "keyfactor.sandbox.util"

local datadir = {}

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function run(command)
  local ok = os.execute(command)
  return ok == true or ok == 0
end

-- Creates DIR (0700) if needed and tightens what is already there.
function datadir.prepare(dir)
  if not run("mkdir -p -m 700 " .. quote(dir) .. " && chmod 700 " .. quote(dir)) then
    error("cannot create the data directory " .. dir, 0)
  end
  for name in lfs.dir(dir) do
    local path = dir .. "/" .. name
    if lfs.attributes(path, "mode") == "file" and lfs.attributes(path, "permissions") ~= "rw-------" then
      run("chmod 600 " .. quote(path))
    end
  end
end

-- Takes DIR/sandbox.lock (an fcntl lock: the kernel drops it when the process
-- dies, so a crashed sandbox leaves no stale lock) and writes our pid in it.
-- Returns the open handle, to keep for the process's life: closing any handle
-- on that file would release the lock. Raises when another sandbox holds it.
function datadir.lock(dir)
  local path = dir .. "/sandbox.lock"
  run("umask 077 && : >> " .. quote(path))
  local f = io.open(path, "r+")
  if not f then error("cannot open " .. path, 0) end
  if not lfs.lock(f, "w") then
    local holder = f:read("l")
    f:close()
    error(string.format("another sandbox (pid %s) is using %s; stop it or pick another --data directory",
      holder and holder:match("%d+") or "?", dir), 0)
  end
  -- fixed width: the lock file is rewritten in place, never truncated
  f:write(string.format("%-20d\n", util.pid()))
  f:flush()
  return f
end

-- Writes DIR/keyfactor.env (0600): the exports keyfactor.from_env reads.
function datadir.write_env(dir, url, ca_file, username, password)
  local lines = {
    "# Written by keyfactor-sandbox: . " .. dir .. "/keyfactor.env && keyfactor status",
    "export KEYFACTOR_HOSTNAME=" .. quote(url:match("^(https?://[^/]+)")),
    "export KEYFACTOR_API_PATH=" .. quote(url:match("^https?://[^/]+/(.*)$") or "KeyfactorAPI"),
    "export KEYFACTOR_USERNAME=" .. quote(username),
    "export KEYFACTOR_PASSWORD=" .. quote(password),
    "export KEYFACTOR_CA_CERT=" .. quote(ca_file),
  }
  local path = dir .. "/keyfactor.env"
  util.write_private(path, table.concat(lines, "\n") .. "\n")
  return path
end

return datadir
