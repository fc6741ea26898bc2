--- Writing a file whole, with its mode, in plain Lua (no luaossl): the
-- CLI's `download --out` and `recover --out` and keyfactor.pki's
-- write_file and write_key use it; and reading a password file's line.
-- @module keyfactor.util.files

local v = require "keyfactor.api.validate"

local files = {}

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- os.execute's success across 5.1 (a number) and 5.2+ (true/nil, how, code).
local function run(command)
  local a, _, code = os.execute(command)
  if type(a) == "number" then return a == 0 end
  return a == true and (code == nil or code == 0)
end

--- Writes the string `data` to `path` atomically: a temporary file in the
-- same directory (made by mktemp(1), so mode 0600 from the start), chmod to
-- `mode` (octal text, default "0644"), the data, then os.rename over `path`
-- — readers see the old file or the new one, never half of one.  Not
-- fsync'ed.  `where` names the caller in messages.  Returns true; or nil,
-- message (the temporary file removed).
function files.write(path, data, mode, where)
  where = where or "keyfactor.util.files.write"
  v.check(where, v.nonempty, path, "path")
  v.check(where, v.string, data, "data")
  mode = mode or "0644"
  if type(mode) ~= "string" or not mode:find("^0?[0-7][0-7][0-7]$") then
    v.raise(where, "mode must be octal text like \"0600\", not " .. tostring(mode))
  end
  local dir, base = path:match("^(.*)/([^/]+)$")
  if not dir then dir, base = ".", path end
  if dir == "" then dir = "/" end
  local p = io.popen("mktemp " .. shell_quote(dir .. "/." .. base .. ".XXXXXX") .. " 2>/dev/null")
  local tmp = p and p:read("*l")
  if p then p:close() end
  if not tmp or tmp == "" then return nil, where .. ": cannot create a temporary file in " .. dir end
  local function fail(message)
    os.remove(tmp)
    return nil, where .. ": " .. message
  end
  if not run("chmod " .. mode .. " " .. shell_quote(tmp)) then return fail("chmod " .. mode .. " failed") end
  local f, err = io.open(tmp, "wb")
  if not f then return fail(err) end
  local ok, werr = f:write(data)
  local closed, cerr = f:close()
  if not ok or not closed then return fail(tostring(werr or cerr)) end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then return fail(tostring(rerr)) end
  return true
end

--- The first line of the file at `path`, without its line end (a password
-- file, as the command line's --password-file reads it); or nil, message.
function files.read_line(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local line = f:read("l") or ""
  f:close()
  return (line:gsub("\r$", ""))
end

return files
