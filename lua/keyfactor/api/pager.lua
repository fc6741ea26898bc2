--- Lazy iteration over Keyfactor's paged lists.
--
-- Keyfactor list endpoints take `<prefix>.pageReturned` (1-based) and
-- `<prefix>.returnLimit`, with a prefix that differs per endpoint
-- (`pq` for certificates, `certificateStoreQuery` for stores, `pagedQuery`
-- for workflow), and answer a bare JSON array.  The iterator fetches one page
-- at a time, so memory stays bounded by one page however long the list (between
-- large pages the iterator runs a full garbage collection, so the previous
-- page is gone before the next is decoded).
--
-- A remote failure in the middle of a loop is raised (as the structured
-- error table): an iterator cannot return `nil, err` without silently ending
-- the loop.  Wrap the loop in `pcall` to handle it.
-- @module keyfactor.api.pager

local errors = require "keyfactor.errors"

local pager = {}

-- Pages of at least this many items are worth a full collection between them.
local LARGE_PAGE = 200

--- Query parameters for one page.
-- `opts`: query, page_size, sort, ascending (default true), plus `extra`
-- parameters copied as they are.
function pager.params(prefix, opts, page, extra)
  -- prefix "": the bare names of Command 25's newer endpoints (QueryString, ...)
  local function name(suffix)
    return prefix == "" and suffix:sub(1, 1):upper() .. suffix:sub(2) or prefix .. "." .. suffix
  end
  local q = {
    [name("pageReturned")] = page,
    [name("returnLimit")] = opts.page_size,
  }
  if opts.query then q[name("queryString")] = opts.query end
  if opts.sort then
    q[name("sortField")] = opts.sort
    -- Keyfactor: 0 = ascending, 1 = descending
    q[name("sortAscending")] = opts.ascending == false and 1 or 0
  end
  for k, v in pairs(extra or {}) do q[k] = v end
  return q
end

--- Returns an iterator over the items of every page.
-- `begin(page_number, start)` prepares the request for a page (sending it at
-- once when `start`), `finish(call)` returns that page's array or nil, err.
-- A page shorter than `page_size` is the last one.  With `poke` (a function
-- that lets transfers progress without blocking), the next page is fetched
-- while the caller works through the current one: two pages in memory.
function pager.iterate(begin, finish, page_size, poke)
  local items, index, number, last, ahead = nil, 0, 0, false, nil
  return function()
    if items and index < #items then
      index = index + 1
      if ahead and index % 8 == 0 then poke() end
      return items[index]
    end
    if last then return nil end
    number = number + 1
    local call = ahead or begin(number, false)
    ahead = nil
    local previous = items and #items or 0
    items, index = nil, 0            -- let the previous page be collected
    -- ... before the next one arrives: with large pages, the previous page's
    -- garbage would otherwise double the peak (measured: 35 -> 27 MiB for
    -- 1,000-item pages; the loop is no slower, the collector has less to do)
    if previous >= LARGE_PAGE then collectgarbage("collect") end
    local page, err = finish(call)
    if page == nil then error(err, 0) end
    if type(page) ~= "table" then    -- 200 with false, null, a number...: a typed failure
      error(errors.decode { method = call.method, path = call.path,
        message = "expected a JSON array (a page), got " .. tostring(page) }, 0)
    end
    last = #page < page_size
    if #page == 0 then return nil end
    if poke and not last then ahead = begin(number + 1, true) end
    items, index = page, 1
    return page[1]
  end
end

return pager
