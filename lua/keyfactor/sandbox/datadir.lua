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

---------------------------------------------------------------- temporary
-- Without --data the sandbox works in $TMPDIR/keyfactor-sandbox.XXXXXX, which
-- holds the CA key and keyfactor.env (the admin password): it is removed on
-- every way out (datadir.discard), and one whose owner died without that
-- (SIGKILL, a crash) is removed by the next sandbox that starts.
local TEMP_PREFIX = "keyfactor-sandbox."

local function temp_root()
  local root = os.getenv("TMPDIR")
  return (root and root ~= "") and root:gsub("/+$", "") or "/tmp"
end

-- A new directory, 0700 (mktemp -d).
function datadir.make_temporary()
  local p = io.popen("mktemp -d " .. quote(temp_root() .. "/" .. TEMP_PREFIX .. "XXXXXX") .. " 2>/dev/null")
  local dir = p and p:read("l")
  if p then p:close() end
  if not dir or dir == "" then error("cannot create a temporary directory in " .. temp_root(), 0) end
  return dir
end

-- Removes the sandbox's directory unless it is a --data one.
function datadir.discard(sandbox)
  if sandbox and not sandbox.persistent and sandbox.dir then
    run("rm -rf -- " .. quote(sandbox.dir))
    sandbox.dir = nil
  end
end

local function alive(pid)
  return pid ~= nil and run("kill -0 " .. pid .. " 2>/dev/null")
end

-- Whether the temporary DIR was left by a sandbox that is gone: its lock is
-- free (the kernel drops it when the owner dies), the pid written in it is
-- no running process, and it holds no saved state.  A lock file younger than a few seconds may be a
-- sandbox still starting: left alone.
local function abandoned(dir)
  -- state.json: a --data directory (whatever its name), never removed
  if lfs.attributes(dir .. "/state.json", "mode") then return false end
  local path = dir .. "/sandbox.lock"
  local changed = lfs.attributes(path, "modification")
  if not changed or os.time() - changed < 10 then return false end
  local f = io.open(path, "r+")
  if not f then return false end
  local free = lfs.lock(f, "w")
  local pid = f:read("l")
  f:close()                                    -- releases our lock at once
  return free and not alive(pid and pid:match("%d+"))
end

-- Removes the temporary directories of sandboxes that died without doing so.
function datadir.clean_abandoned()
  local root = temp_root()
  local ok, iter, state = pcall(lfs.dir, root)
  if not ok then return end
  for name in iter, state do
    local dir = root .. "/" .. name
    -- lua_XXXXXX (os.tmpname) with a keyfactor.env: made by earlier versions
    local ours = name:sub(1, #TEMP_PREFIX) == TEMP_PREFIX
      or (name:match("^lua_%w+$") and lfs.attributes(dir .. "/keyfactor.env", "mode") == "file")
    if ours and lfs.attributes(dir, "mode") == "directory" and abandoned(dir) then
      util.log("removing %s, left by a sandbox that is gone", dir)
      run("rm -rf -- " .. quote(dir))
    end
  end
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
