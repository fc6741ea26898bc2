-- Reading a whole file in a spec:
--   local read = require("support.files").read     -- nil, message when it cannot be opened
--   local read = require("support.files").must     -- raises instead
--   local write = require("support.files").write   -- the whole file, raising when it cannot
local files = {}

function files.read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  return text
end

function files.must(path)
  return assert(files.read(path))
end

function files.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

return files
