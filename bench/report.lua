--- Turns bench/run's measurements into RESULTS.md and the plot's data files.
--   lua5.4 bench/report.lua RESULTS_TSV META_TSV OUT_MD PLOT_DIR
-- RESULTS_TSV lines: scenario TAB tool TAB calls TAB value TAB unit
-- (unit "s": seconds for `calls` calls; "KiB"; "us": microseconds per call).
local res_file, meta_file, out_md, plot_dir = arg[1], arg[2], arg[3], arg[4]

local groups, order = {}, {}
local function group(scenario, tool)
  local key = scenario .. "\0" .. tool
  local g = groups[key]
  if not g then
    g = { scenario = scenario, tool = tool, values = {}, fails = 0 }
    groups[key] = g
    order[#order + 1] = g
  end
  return g
end
for line in io.lines(res_file) do
  local scenario, tool, calls, value, unit = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$")
  if scenario then
    local g = group(scenario, tool)
    g.calls, g.unit = tonumber(calls), unit
    if tonumber(value) then g.values[#g.values + 1] = tonumber(value) else g.fails = g.fails + 1 end
  end
end

local meta, versions = {}, {}
for line in io.lines(meta_file) do
  local k, v = line:match("^([^\t]*)\t(.*)$")
  if k == "version" then versions[#versions + 1] = v elseif k then meta[k] = v end
end

local function median(t)
  local s = {}
  for i, x in ipairs(t) do s[i] = x end
  table.sort(s)
  local n = #s
  if n == 0 then return nil end
  if n % 2 == 1 then return s[(n + 1) / 2] end
  return (s[n / 2] + s[n / 2 + 1]) / 2
end
local function minmax(t)
  local lo, hi = math.huge, -math.huge
  for _, x in ipairs(t) do lo, hi = math.min(lo, x), math.max(hi, x) end
  return lo, hi
end
local function get(scenario, tool) return groups[scenario .. "\0" .. tool] end
-- req/s statistics of a group measured in seconds
local function rate(g)
  if not g or #g.values == 0 then return nil end
  local rates = {}
  for i, s in ipairs(g.values) do rates[i] = g.calls / s end
  local lo, hi = minmax(rates)
  return median(rates), lo, hi
end
local function secs(g)
  if not g or #g.values == 0 then return nil end
  local lo, hi = minmax(g.values)
  return median(g.values), lo, hi
end
local function fmt_int(x)
  if not x then return "n/a" end
  local s = string.format("%.0f", x)
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end
local function fmt(x, p) return x and string.format("%." .. (p or 1) .. "f", x) or "n/a" end

local out = {}
local function w(...) out[#out + 1] = table.concat({ ... }) end

local NOTES = {
  ["C libcurl (1 easy handle)"] = "the limit: one reused easy handle, body counted not parsed",
  ["C libcurl, HTTP/1.1"] = "same, CURL_HTTP_VERSION_1_1",
  ["lua-keyfactor kf:certificate"] = "HTTP/2 (default), JSON decoded to a table",
  ["lua-keyfactor, http2=false"] = "HTTP/1.1 keep-alive",
  ["lua-keyfactor kf:deploy"] = "validation + JSON encode + decode; HTTP/2",
  ["Python requests Session"] = "/usr/bin/python3, HTTP/1.1 keep-alive, r.json()",
  ["LuaSocket+LuaSec"] =
    "**no keep-alive**: ssl.https.request reconnects (TCP + TLS) every call; cjson decode",
  ["curl(1) per call"] = "fork + exec + new TLS connection every call",
  ["C libcurl + cJSON"] = "the fair peer of kf:certificate: one reused easy handle, every body parsed by cJSON",
  ["Go net/http + encoding/json"] = "HTTP/2, every body decoded into map[string]any",
}

w("# lua-keyfactor benchmark results")
w("")
local smoke_note = meta.mode == "smoke" and " **in smoke mode (tiny counts, not results)**"
  or meta.mode == "peers" and " (`--peers`: only the scenarios against the fair peers)" or ""
w("Produced by `make bench` (`bash bench/run`)", smoke_note,
  " on ", meta.date, " in ", meta.duration, " s.")
w("")
if meta.load then
  w("Load average (1, 5, 15 min; other work shares the machine) at the start and the end: ", meta.load)
  w("")
end
w("| machine | |")
w("|---|---|")
w("| CPU | ", meta.cpu or "?", " |")
w("| memory | ", meta.memory or "?", " |")
w("| kernel / OS | ", meta.kernel or "?", " / ", meta.os or "?", " |")
for _, v in ipairs(versions) do w("| version | ", v, " |") end
w("")
w("Every tool sends the same request to the same server: the same URL, `Accept` and `Content-Type: application/json`, ",
  "`x-keyfactor-requested-with: APIClient`, `x-keyfactor-api-version: 1`, HTTP Basic credentials ",
  "(nginx answers 401 without them), TLS verification on against the bench's throwaway CA. ",
  "The server is nginx on 127.0.0.1 (1 worker, TLS 1.3, HTTP/2 and HTTP/1.1 offered by ALPN) serving canned ",
  "Keyfactor-shaped JSON: a certificate of 3.0 KB, pages of 1,000 certificates (3.0 MB), a deploy answer. ",
  "Client and server share the same ", (meta.cpu or ""):match("%((%d+) CPUs") or "?", " CPUs. ",
  "Median over the runs, with min–max; each run is a fresh process timing only its loop.")
w("")

local function seq_table(scenario, title, base_tool, kf_tool)
  local any = false
  for _, g in ipairs(order) do if g.scenario == scenario then any = true end end
  if not any then return nil end
  w("## ", title)
  w("")
  w("| tool | calls/run | runs | median req/s | min–max req/s | × C loop | notes |")
  w("|---|---:|---:|---:|---:|---:|---|")
  local cm = rate(get(scenario, base_tool))
  for _, g in ipairs(order) do
    if g.scenario == scenario then
      local m, lo, hi = rate(g)
      w("| ", g.tool, " | ", fmt_int(g.calls), " | ", #g.values, g.fails > 0 and (" (" .. g.fails .. " failed)") or "",
        " | ", fmt_int(m), " | ", fmt_int(lo), "–", fmt_int(hi), " | ",
        (m and cm) and string.format("%.2f×", m / cm) or "n/a", " | ", NOTES[g.tool] or "", " |")
    end
  end
  w("")
  return rate(get(scenario, kf_tool)), cm
end

local get_kf, get_c = seq_table("get", "1. Sequential keep-alive GET /Certificates/{id}",
  "C libcurl (1 easy handle)", "lua-keyfactor kf:certificate")
local get_kf1, get_c1 = rate(get("get", "lua-keyfactor, http2=false")), rate(get("get", "C libcurl, HTTP/1.1"))
local get_py = rate(get("get", "Python requests Session"))
local dep_kf, dep_c = seq_table("deploy", "2. Sequential POST /Enrollment/PFX/Deploy",
  "C libcurl (1 easy handle)", "lua-keyfactor kf:deploy")
local dep_py = rate(get("deploy", "Python requests Session"))

local fan_ratios = {}
local function fan_table(scenario, title, note)
  local any = false
  for _, g in ipairs(order) do if g.scenario == scenario then any = true end end
  if not any then return end
  w("## ", title)
  w("")
  if note then w(note) w("") end
  w("| calls | tool | runs | median ms | min–max ms | req/s | kf ÷ peer (throughput) | peer |")
  w("|---:|---|---:|---:|---:|---:|---:|---|")
  for _, g in ipairs(order) do
    if g.scenario == scenario then
      local m, lo, hi = secs(g)
      local ratio, c_tool = "", nil
      -- Each kf row against its fair peer: what returns decoded answers
      -- (kf cN, kf core+decode cN) against curl_multi + PIPEWAIT parsing every
      -- body with cJSON; the C core alone (kf core cN) against the same
      -- peer discarding bodies; the plain PIPEWAIT row where there is no
      -- cJSON one.
      local part, n = g.tool:match("^kf (.-)c(%d+)$")
      if n then
        local pipewait = "C multi c" .. n .. " + PIPEWAIT"
        c_tool = get(scenario, pipewait) and pipewait or ("C multi c" .. n)
        if part ~= "core " and get(scenario, pipewait .. " + cJSON") then c_tool = pipewait .. " + cJSON" end
      elseif g.tool == "kf seq" then
        c_tool = "C seq"
      end
      if c_tool and m then
        local cm = secs(get(scenario, c_tool))
        if cm then
          ratio = string.format("%.2f×", cm / m)
          if g.tool ~= "kf seq" and part ~= "core+decode " then
            -- the goals: the C core alone 0.95x of the discarding peer, kf:parallel
            -- 1.0x of the parsing one, 0.9x where the peer is plain curl_multi
            local goal = part == "core " and 0.95 or c_tool:find("cJSON", 1, true) and 1.0 or 0.9
            fan_ratios[#fan_ratios + 1] = { scenario .. " " .. g.tool, cm / m, c_tool, goal }
          end
        end
      end
      w("| ", fmt_int(g.calls), " | ", g.tool, " | ", #g.values, g.fails > 0 and (" (" .. g.fails .. " failed)") or "",
        " | ", fmt(m and m * 1000), " | ", fmt(lo and lo * 1000), "–", fmt(hi and hi * 1000),
        " | ", fmt_int(m and g.calls / m), " | ", ratio, " | ", ratio ~= "" and c_tool or "", " |")
    end
  end
  w("")
end

local fan_scen = {}
for _, g in ipairs(order) do
  local n = g.scenario:match("^fan(%d+)$")
  if n and not fan_scen[g.scenario] then
    fan_scen[g.scenario] = true
    fan_scen[#fan_scen + 1] = tonumber(n)
  end
end
table.sort(fan_scen)
for i, n in ipairs(fan_scen) do
  fan_table("fan" .. n, string.format("3%s. Fan-out, %s GETs against nginx", string.char(96 + i), fmt_int(n)),
    i == 1 and "`kf seq` is N × `kf:certificate` in a loop, `C seq` the one-easy-handle loop; `kf cN` is "
      .. "`kf:parallel` at concurrency N, `C multi cN` curl_multi with at most N transfers (HTTP/2 multiplexing "
      .. "allowed in both). Both start with no connection. Plain `C multi cN` opens up to N connections at once, "
      .. "each with its own TLS handshake, and against a local server that setup, not the requests, dominates "
      .. "short fan-outs. `C multi cN + PIPEWAIT` sets CURLOPT_PIPEWAIT (transfers wait for the first HTTP/2 "
      .. "connection and multiplex on it), as lua-keyfactor does by default (`http2 = true`). "
      .. "Where the time goes: `kf core cN` is the C core "
      .. "alone (`session:start`/`step` from a plain Lua loop, each body handed over as a Lua string and "
      .. "dropped, as the discarding peer drops it: libcurl and the core), `kf core+decode cN` the same with "
      .. "every body decoded and kept (`request:result(true)`); `kf cN` adds the client's "
      .. "Lua (the endpoint, the transport, the scheduler's coroutines) and keeps every decoded answer. "
      .. "`C multi cN + PIPEWAIT` receives each body and discards it; `+ cJSON` parses every body with cJSON "
      .. "and keeps every tree to the end, as `kf:parallel` keeps every answer: the fair peer of `kf cN`. "
      .. "`Go cN` is Go's net/http over HTTP/2, N goroutines, every body decoded by encoding/json into "
      .. "`map[string]any` and kept. Each round runs every tool once, one after the other." or nil)
end
fan_table("sandbox50", "3c. Fan-out against the sandbox with 50 ms injected latency",
  "The sandbox (`keyfactor.sandbox`, lua-http over cqueues) with `sb:fault{method=\"GET\", "
  .. "path=\"/KeyfactorAPI/Certificates/<id>\", times=100000, delay_ms=50}`: every GET waits 50 ms in the server. "
  .. "nginx cannot add a delay, so the \"server adding 50 ms\" measurement uses the sandbox. "
  .. "The floor is calls × 50 ms / concurrency (200 calls: 10 s sequential, 625 ms at 16, 156 ms at 64) plus the "
  .. "sandbox's own per-request cost, which a Lua server pays on one core.")

-- iteration
local it = {}
do
  local page_hwm = get("page_hwm", "one page")
  local page_base = get("page_base", "one page")
  local has = get("iterate", "kf plain") or get("iterate", "kf prefetch")
  if has then
    w("## 4. Iterating 100,000 certificates: `kf:certificates{page_size = 1000}`")
    w("")
    w("nginx serves pages 1–100 of 1,000 certificates (3.0 MB of JSON each) and `[]` for page 101. Peak RSS is ",
      "the process's VmHWM at the end of the loop (whole Lua process: interpreter, libcurl, OpenSSL, the client).")
    w("")
    w("| variant | runs | items | median s | min–max s | certificates/s | peak RSS (max over runs) ",
      "| RSS before the loop |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for _, variant in ipairs { "kf plain", "kf prefetch" } do
      local g = get("iterate", variant)
      if g then
        local m, lo, hi = secs(g)
        local hwm = get("iterate_hwm", variant)
        local base = get("iterate_base", variant)
        local peak = hwm and select(2, minmax(hwm.values))
        it[variant] = peak
        w("| ", variant == "kf plain" and "default" or "`prefetch = true`", " | ", #g.values, " | ", fmt_int(g.calls),
          " | ", fmt(m, 2), " | ", fmt(lo, 2), "–", fmt(hi, 2), " | ", fmt_int(m and g.calls / m),
          " | ", fmt(peak and peak / 1024), " MiB | ", fmt(base and median(base.values) / 1024), " MiB |")
      end
    end
    w("")
  end
  if page_hwm then
    local ph, pb = median(page_hwm.values), median(page_base.values)
    it.page, it.page_base = ph, pb
    w("One decoded page for comparison: a process that loads the client, reads the 3.0 MB page body into a string and ",
      "decodes it as the transport does (`core.decode_json`) peaks at **", fmt(ph / 1024), " MiB** (",
      fmt(pb / 1024), " MiB before; the body string plus its decoded table cost ", fmt((ph - pb) / 1024), " MiB).")
    w("")
  end
end

-- overhead
do
  local any = false
  for _, g in ipairs(order) do if g.scenario == "overhead" then any = true end end
  if any then
    w("## 5. Per-call Lua overhead without the network")
    w("")
    w("The client's own code with the C session replaced by a stand-in that answers at once with the canned body ",
      "(URL and query building, headers, retry/error bookkeeping, validation, JSON), and its pieces alone.")
    w("")
    w("| what | iterations/run | runs | median µs/call | min–max |")
    w("|---|---:|---:|---:|---:|")
    for _, g in ipairs(order) do
      if g.scenario == "overhead" then
        local lo, hi = minmax(g.values)
        w("| ", g.tool, " | ", fmt_int(g.calls), " | ", #g.values, " | ", fmt(median(g.values), 2), " | ",
          fmt(lo, 2), "–", fmt(hi, 2), " |")
      end
    end
    w("")
  end
end

-- targets
w("## Targets")
w("")
w("| target | measured | met? |")
w("|---|---|---|")
local function verdict(ok) if ok == nil then return "n/a" end return ok and "yes" or "**no**" end
local function ratio_row(label, a, b, goal)
  local r = (a and b) and a / b
  w("| ", label, " | ", r and string.format("%.2f× (%s vs %s req/s)", r, fmt_int(a), fmt_int(b)) or "n/a",
    " | ", verdict(r and r >= goal), " |")
end
ratio_row("sequential GET ≥ 1.0× C libcurl + cJSON (HTTP/2)", get_kf, rate(get("get", "C libcurl + cJSON")), 1.0)
ratio_row("sequential GET ≥ 0.90× the C loop (HTTP/2)", get_kf, get_c, 0.90)
ratio_row("sequential GET ≥ 0.90× the C loop (both HTTP/1.1)", get_kf1, get_c1, 0.90)
ratio_row("sequential deploy ≥ 0.90× the C loop", dep_kf, dep_c, 0.90)
ratio_row("sequential GET ≥ 4× Python requests", get_kf, get_py, 4)
ratio_row("sequential deploy ≥ 4× Python requests", dep_kf, dep_py, 4)
for _, fr in ipairs(fan_ratios) do
  w("| fan-out ≥ ", string.format("%.2f", fr[4]), "× ", fr[3], ": ", fr[1], " | ", string.format("%.2f×", fr[2]),
    " | ", verdict(fr[2] >= fr[4]), " |")
end
for _, variant in ipairs { "kf plain", "kf prefetch" } do
  if it[variant] and it.page then
    local limit = it.page + 10 * 1024
    w("| 100k iteration peak RSS < one page + 10 MiB (", variant == "kf plain" and "default" or "prefetch", ") | ",
      string.format("%.1f MiB vs %.1f + 10 = %.1f MiB", it[variant] / 1024, it.page / 1024, limit / 1024),
      " | ", verdict(it[variant] < limit), " |")
  end
end
w("")
w("![results](results.png)")
w("")

local f = assert(io.open(out_md, "w"))
f:write(table.concat(out, "\n"))
f:close()

-- plot data
os.execute("mkdir -p '" .. plot_dir .. "'")
local function label(s) return '"' .. s:gsub('"', "'") .. '"' end
f = assert(io.open(plot_dir .. "/seq.dat", "w"))
for _, g in ipairs(order) do
  if g.scenario == "get" then
    local m, lo, hi = rate(g)
    local short = g.tool:gsub(" %(1 easy handle%)", ""):gsub("lua%-keyfactor", "kf")
    if m then f:write(label(short), " ", m, " ", lo, " ", hi, "\n") end
  end
end
f:close()
f = assert(io.open(plot_dir .. "/fan.dat", "w"))
local fan_last = fan_scen[#fan_scen]
for _, scenario in ipairs { fan_last and ("fan" .. fan_last) or "none", "sandbox50" } do
  for _, g in ipairs(order) do
    if g.scenario == scenario then
      local m, lo, hi = secs(g)
      local where = scenario == "sandbox50" and "sandbox+50ms" or "nginx"
      if m then
        f:write(label(string.format("%s %s (%d)", where, g.tool, g.calls)), " ", m * 1000, " ", lo * 1000, " ",
          hi * 1000, " ", g.tool:match("^kf") and 1 or 0, "\n")
      end
    end
  end
end
f:close()
print("report: " .. out_md)
