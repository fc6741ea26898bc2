-- Fills in the Topics table of LDoc's index (LDoc leaves a topic's
-- description empty): each topic gets the first sentence of the paragraph
-- under its title.  `make docs` runs it after LDoc:
--   lua5.4 docs/topic-summaries.lua doc/html/index.html README.md build/docs/calls.md ...
local index_path = assert(arg[1], "usage: topic-summaries.lua INDEX.html TOPIC.md...")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

local function escape(text)
  return (text:gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"))
end

-- The first sentence of the first paragraph after the "# " title, as HTML
-- (Markdown links and emphasis dropped, `code` kept as code).
local function summary(markdown)
  local paragraph = markdown:match("^#[^\n]*\n+(.-)\n%s*\n") or markdown:match("^#[^\n]*\n+(.-)$") or ""
  paragraph = paragraph:gsub("%s*\n%s*", " ")
  local sentence = paragraph:match("^(.-%.)%s") or paragraph
  sentence = sentence:gsub("%[([^%]]*)%]%([^)]*%)", "%1"):gsub("%*%*", "")
  local html = escape(sentence):gsub("`([^`]*)`", "<code>%1</code>")
  return html
end

local index = read(index_path)
local filled = 0
for i = 2, #arg do
  local name = arg[i]:match("[^/]*$")
  local text = summary(read(arg[i]))
  assert(text ~= "", arg[i] .. ": no paragraph under the title")
  local link = '<a href="topics/' .. name .. '.html">'
  local at = index:find(link, 1, true)
  assert(at, index_path .. ": no topic " .. name)
  local cell_start, cell_end = index:find('<td class="summary"></td>', at, true)
  assert(cell_start, index_path .. ": no empty summary for " .. name)
  index = index:sub(1, cell_start - 1) .. '<td class="summary">' .. text .. "</td>" .. index:sub(cell_end + 1)
  filled = filled + 1
end
local f = assert(io.open(index_path, "wb"))
f:write(index)
f:close()
print("topic summaries: " .. filled .. " written to " .. index_path)
