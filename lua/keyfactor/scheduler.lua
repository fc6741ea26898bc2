--- Coroutines over one curl multi handle: the engine of `kf:parallel`.
--
-- Each function runs in its own coroutine and calls ordinary `kf:` methods.
-- When one of them needs the network, `Transport:transfer` finds the
-- scheduler of the running coroutine and calls `Scheduler:transfer`, which
-- starts the request and yields; the scheduler drives every transfer at once
-- with `session:step` and resumes each coroutine when its request is done.
-- @module keyfactor.scheduler

local core = require "keyfactor.core"

local scheduler = {}
local Scheduler = {}
Scheduler.__index = Scheduler

local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack   -- luacheck: ignore 113

-- coroutine -> scheduler, for the coroutines a scheduler is running now.
local owner = setmetatable({}, { __mode = "k" })

--- The scheduler running the current coroutine on `session`, if any.
function scheduler.current(session)
  local co = coroutine.running()
  local s = co and owner[co]
  if s and s.session == session then return s end
  return nil
end

-- Called inside a task's coroutine.
function Scheduler:transfer(spec)
  while self.inflight >= self.limit do coroutine.yield("slot") end
  local request = self.session:start(spec)
  self.inflight = self.inflight + 1
  coroutine.yield("wait", request)
  return request
end

function Scheduler:sleep(seconds)
  coroutine.yield("sleep", core.now() + seconds)
end

local function push(queue, item) queue[#queue + 1] = item end

-- A first-in first-out queue that does not move its items (a fan-out of
-- thousands of functions waits here for a free slot).
local function fifo() return { head = 1, tail = 0 } end
local function enqueue(q, item) q.tail = q.tail + 1; q[q.tail] = item end
local function dequeue(q)
  local item = q[q.head]
  q[q.head] = nil
  q.head = q.head + 1
  return item
end
local function fifo_size(q) return q.tail - q.head + 1 end

function Scheduler:finish(task, ok, ...)
  self.live = self.live - 1
  owner[task.co] = nil
  local i = task.index
  if not ok then
    self.errors[i] = (...)
  else
    local value, err = ...
    self.values[i] = value
    if value == nil and err ~= nil then self.errors[i] = err end
  end
  self.done = self.done + 1
  if self.errors[i] ~= nil then self.failed = self.failed + 1 end
  if self.progress then self.progress(self.done, self.total, self.failed) end
end

function Scheduler:resume(task, ...)
  local r = pack(coroutine.resume(task.co, ...))
  if not r[1] or coroutine.status(task.co) == "dead" then
    return self:finish(task, unpack(r, 1, r.n))
  end
  local what, arg = r[2], r[3]
  if what == "wait" then
    self.waiting[arg] = task
  elseif what == "slot" then
    enqueue(self.slot_waiters, task)
  elseif what == "sleep" then
    push(self.sleepers, { task = task, deadline = arg })
  else
    -- A yield that is not ours cannot be resumed meaningfully: fail the task.
    self:finish(task, false, "kf:parallel: function yielded a value the scheduler does not know ("
      .. tostring(what) .. "); run nested coroutines inside the function")
  end
end

-- Moves every task whose transfer has finished, or whose sleep is over, or
-- that waits for a free slot while one is free, to the ready queue.
function Scheduler:wake(ready)
  for request, task in pairs(self.waiting) do
    if request:done() then
      self.waiting[request] = nil
      self.inflight = self.inflight - 1
      push(ready, task)
    end
  end
  -- A woken task that finds the slot taken again simply waits again.
  for _ = 1, math.min(self.limit - self.inflight, fifo_size(self.slot_waiters)) do
    push(ready, dequeue(self.slot_waiters))
  end
  local now = core.now()
  for i = #self.sleepers, 1, -1 do
    if self.sleepers[i].deadline <= now then
      push(ready, table.remove(self.sleepers, i).task)
    end
  end
end

function Scheduler:next_timeout()
  local timeout = 1
  local now = core.now()
  for _, s in ipairs(self.sleepers) do
    timeout = math.min(timeout, math.max(0, s.deadline - now))
  end
  return timeout
end

-- Runs a ready task until it yields or ends; its first run gets its arguments.
function Scheduler:run_task(task)
  local args = task.args
  if args then
    task.args = nil
    return self:resume(task, unpack(args, 1, args.n))
  end
  return self:resume(task)
end

function Scheduler:loop()
  local ready = {}
  for _, task in ipairs(self.tasks) do push(ready, task) end
  while self.live > 0 do
    for _, task in ipairs(ready) do self:run_task(task) end
    ready = {}
    if self.live == 0 then break end
    self:wake(ready)
    if #ready == 0 then
      local timeout = self:next_timeout()
      if self.inflight > 0 then
        self.session:step(timeout)
      elseif timeout > 0 then
        core.sleep(timeout)
      end
      self:wake(ready)
    end
  end
end

--- Runs `fns` concurrently on `session`; see `kf:parallel`.
-- `args` are passed to each function (the client, then the index).
-- Returns values, errors: arrays in input order.
function scheduler.run(session, fns, opts, args_for)
  local self = setmetatable({
    session = session, limit = opts.concurrency or 16, inflight = 0,
    waiting = {}, slot_waiters = fifo(), sleepers = {}, tasks = {},
    values = {}, errors = {}, live = #fns, total = #fns, done = 0, failed = 0,
    progress = opts.progress,
  }, Scheduler)
  for i, fn in ipairs(fns) do
    local task = { index = i, co = coroutine.create(fn), args = pack(args_for(i)) }
    owner[task.co] = self
    self.tasks[i] = task
  end
  local ok, err = pcall(self.loop, self)
  for _, task in ipairs(self.tasks) do owner[task.co] = nil end
  for request in pairs(self.waiting) do request:cancel() end
  if not ok then error(err, 0) end
  return self.values, self.errors
end

return scheduler
