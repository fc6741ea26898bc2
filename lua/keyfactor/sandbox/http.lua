-- HTTP plumbing of the sandbox: the request object handlers get, reading
-- request bodies with the size limit enforced while reading, and writing
-- answers (JSON errors, refusals that close the connection).
local http_headers = require "http.headers"
local util = require "keyfactor.sandbox.util"

local http = {}

http.IO_TIMEOUT = 30
local IO_TIMEOUT = http.IO_TIMEOUT
local MAX_BODY = 16 * 1024 * 1024

---------------------------------------------------------------- requests
local function parse_query(qs)
  local params = {}
  for pair in (qs or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    params[util.url_decode(k):lower()] = util.url_decode(v)
  end
  return params
end

local Request = {}
Request.__index = Request

function Request:json()
  if self.decoded == nil then
    if self.body == "" then util.fail(400, "bad_json", "A JSON request body is required") end
    local v, err = util.decode(self.body)
    if v == nil then util.fail(400, "bad_json", "The request body is not valid JSON: " .. tostring(err)) end
    self.decoded = v
  end
  return self.decoded
end

-- The next chunk's declared size, read ahead (and put back) so a huge chunk
-- is refused before lua-http buffers it whole (it fills a chunk at once).
local function next_chunk_size(stream, timeout)
  local sock = stream.connection and stream.connection.socket
  if not sock or stream.body_read_left == 0 then return 0 end
  local line = sock:xread("*L", timeout)
  if not line then return 0 end
  sock:unget(line)
  return tonumber(line:match("^(%x+)") or "0", 16) or 0
end

-- Reads the request body with the 16 MiB limit enforced while reading.
-- Returns the body; or nil, status, message for a request to refuse (the
-- caller answers and hangs up); or nil, nil, err when the client went away.
local function read_body(stream, headers)
  local cl = headers:get("content-length")
  if cl and not cl:match("^%d+$") then return nil, 400, "Invalid Content-Length" end
  local length = cl and tonumber(cl)
  if length and length > MAX_BODY then return nil, 413, "The request body is too large" end
  local chunked = stream.body_read_type == "chunked"
  local parts, size, deadline = {}, 0, util.monotime() + IO_TIMEOUT
  while true do
    local left = deadline - util.monotime()
    if left <= 0 then return nil, nil, "timed out reading the body" end
    if chunked and size + next_chunk_size(stream, left) > MAX_BODY then
      return nil, 413, "The request body is too large"
    end
    local chunk, err = stream:get_next_chunk(left)
    if not chunk then
      if err then return nil, nil, err end
      break
    end
    size = size + #chunk
    if size > MAX_BODY then return nil, 413, "The request body is too large" end
    parts[#parts + 1] = chunk
  end
  -- lua-http may end a length-delimited body early when the client hangs up
  if length and size < length then return nil, nil, "body shorter than Content-Length" end
  return table.concat(parts)
end

---------------------------------------------------------------- answers
local function new_headers(status, content_type, length, extra)
  local h = http_headers.new()
  h:append(":status", tostring(status))
  h:append("content-type", content_type)
  -- lua-http refuses Content-Length on a 204 (after writing its status line)
  if length and status ~= 204 then h:append("content-length", tostring(length)) end
  -- as every HTTP server does (RFC 9110 §6.6.1): clients compare clocks with it
  h:append("date", os.date("!%a, %d %b %Y %H:%M:%S GMT", math.floor(util.now())))
  for k, v in pairs(extra or {}) do h:append(k, tostring(v)) end
  return h
end

-- Closes the connection without (finishing) an answer. The stream is marked
-- closed so lua-http neither writes an automatic answer on the dead socket nor
-- reads on to drain it: with cqueues + OpenSSL 3 that drain can spin forever.
local function abort(stream)
  local conn = stream.connection
  if conn and conn.socket then conn.socket:shutdown() end
  if stream.state ~= "closed" then pcall(stream.set_state, stream, "closed") end
end

local function unread(stream) return stream.state == "open" or stream.state == "half closed (local)" end

-- Reads and drops what is left of the request body, up to `max_bytes` and
-- `seconds`; true when all of it was read.
local function drain(stream, max_bytes, seconds)
  local deadline, read = util.monotime() + seconds, 0
  local chunked = stream.body_read_type == "chunked"
  while unread(stream) and read <= max_bytes do
    local left = deadline - util.monotime()
    -- a chunk is buffered whole: one declared over the bound is not read
    if left <= 0 or (chunked and read + next_chunk_size(stream, left) > max_bytes) then break end
    local chunk = stream:get_next_chunk(left)
    if not chunk then break end
    read = read + #chunk
  end
  return not unread(stream)
end

-- What is left of a request body when the handler is done (an answer made
-- before reading it: a fault, a refusal) is read, up to a bound, so the
-- connection can serve the next request; else the connection is hung up.
-- lua-http's own clean-up would read it in a loop that never ends (nor
-- yields) when the client hung up half way through the body.
local FINISH_BYTES, FINISH_SECONDS = 1024 * 1024, 5
local function finish(stream)
  if not drain(stream, FINISH_BYTES, FINISH_SECONDS) then abort(stream) end
end

local function send(stream, status, body, content_type, extra)
  local h = new_headers(status, content_type or "application/json; charset=utf-8", #body, extra)
  local ok, err = stream:write_headers(h, body == "", IO_TIMEOUT)
  if ok and body ~= "" then ok, err = stream:write_chunk(body, true, IO_TIMEOUT) end
  if not ok then
    util.log("could not answer: %s", tostring(err))
    -- Hang up at once: lua-http's clean-up read on such a TLS stream can spin.
    abort(stream)
  end
  return ok
end

local function error_body(code, message)
  return util.encode{ ErrorCode = code, Message = message }
end

-- Answers a request whose body we will not read (malformed, too large) and
-- hangs up: lua-http would otherwise try to read or drain that body to reuse
-- the connection, and on a bad Content-Length it retries forever (100% CPU).
-- A declared length up to DRAIN_BODY is read and dropped first, so the client
-- (still sending) gets the answer instead of a reset.
local DRAIN_BODY = 64 * 1024 * 1024
local function reject(stream, status, message)
  pcall(send, stream, status, error_body(util.codes.bad_request, message), nil, { connection = "close" })
  local length = tonumber(stream.body_read_type == "length" and stream.body_read_left or nil)
  if length and length <= DRAIN_BODY then drain(stream, DRAIN_BODY, 10) end
  abort(stream)
  return status
end

-- Turns a raised value into (status, body, headers); logs internal errors.
local function failure_answer(err, trace)
  if util.is_failure(err) then
    return err.status, error_body(err.code, err.message), err.headers
  end
  util.log("internal error: %s", trace or tostring(err))
  return 500, error_body(util.codes.internal, "Internal server error: " .. tostring(err))
end

-- The `req` of the handler contract (router.lua) from a stream's headers.
function http.request(stream, headers)
  local target = headers:get(":path") or "/"
  local raw_path, qs = target:match("^([^?]*)%??(.*)$")
  local path = util.url_decode((raw_path:gsub("+", "%%2B")))
  return setmetatable({ method = headers:get(":method"), path = path, lower_path = path:lower(),
    query = qs, params = parse_query(qs), headers = headers, stream = stream, body = "" }, Request)
end

http.read_body, http.new_headers, http.abort, http.send, http.finish = read_body, new_headers, abort, send, finish
http.error_body, http.reject, http.failure_answer = error_body, reject, failure_answer

return http
