--- Dates as the API writes them and seconds since the epoch, both ways, in
-- UTC whatever the host's time zone (os.time would read a table as local
-- time).
-- @module keyfactor.util.dates

local dates = {}

--- Seconds since the epoch of an ISO 8601 date-time read as UTC
-- ("2027-11-25T13:24:19Z", fractions and offsets ignored), or nil.
-- Days from the civil date as in H. Hinnant's days_from_civil.
function dates.epoch(iso)
  local y, m, d, hh, mm, ss = tostring(iso):match("^(%d+)%-(%d+)%-(%d+)T(%d+):(%d+):(%d+)")
  if not y then return nil end
  y, m = tonumber(y), tonumber(m)
  y = m <= 2 and y - 1 or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (m + (m > 2 and -3 or 9)) + 2) / 5) + tonumber(d) - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return ((era * 146097 + doe - 719468) * 24 + tonumber(hh)) * 3600 + tonumber(mm) * 60 + tonumber(ss)
end

--- The ISO 8601 UTC text ("2027-11-25T13:24:19Z") of `seconds` since the
-- epoch (default: now).
function dates.iso(seconds)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", seconds and math.floor(seconds) or nil)
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10,
  Nov = 11, Dec = 12 }

--- Seconds since the epoch of an HTTP date ("Mon, 07 Dec 2026 04:56:39 GMT"), or nil.
function dates.http(text)
  local d, mon, y, h, mi, s = tostring(text):match("(%d+) (%a%a%a) (%d%d%d%d) (%d+):(%d+):(%d+)")
  if not d or not MONTHS[mon] then return nil end
  return dates.epoch(string.format("%04d-%02d-%02dT%02d:%02d:%02dZ", y, MONTHS[mon], d, h, mi, s))
end

return dates
