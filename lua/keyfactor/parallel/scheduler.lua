--- Coroutines over one curl multi handle: the engine of `kf:parallel`.
--
-- As many worker coroutines as the concurrency limit each take the next
-- function, run it, record its result and take the next, until none is
-- left.  The functions call ordinary `kf:` methods.  For the length of the
-- run the client's transport waits through the run's driver (`run.driver`,
-- installed by `Transport:parallel` over the client's own): inside one of
-- the run's workers a wait yields the request to the run, and a sleep its
-- deadline; anywhere else the wrapped driver waits as it always does.  The
-- run drives every transfer at once through the client's driver
-- (`driver:poll`: blocking, or yielding to the host's event loop) and
-- resumes each worker when its request is done.  A worker has at most one
-- transfer open, so the number of workers is the bound on transfers.
-- When the client is closed by one of the functions, the run ends: what
-- finished stays, the rest get "canceled" errors.
-- @module keyfactor.parallel.scheduler

local core = require "keyfactor.core"
local driver = require "keyfactor.driver"
local errors = require "keyfactor.errors"

local scheduler = {}
local Scheduler = {}
Scheduler.__index = Scheduler

-- The driver a run installs: its workers yield to the run, any other
-- coroutine waits with the wrapped driver (the client's own, or an outer
-- run's when runs of one client overlap in an event loop).
local Parallel = { name = "parallel" }
Parallel.__index = Parallel

-- Whether the running coroutine is one of this run's workers.
function Parallel:in_worker()
  local co = coroutine.running()
  return co ~= nil and self.run.workers_by_co[co] ~= nil
end

function Parallel:active()
  return self:in_worker() or self.wrapped:active()
end

function Parallel:wait(session, request)
  if not self:in_worker() then return driver.wait(self.wrapped, session, request) end
  local run = self.run
  run.inflight = run.inflight + 1
  coroutine.yield("wait", request)
end

function Parallel:sleep(seconds)
  if not self:in_worker() then return self.wrapped:sleep(seconds) end
  coroutine.yield("sleep", core.now() + seconds)
end

function Parallel:poll(session, timeout)
  return self.wrapped:poll(session, timeout)
end

-- kf:close() during the run: the wrapped driver lets go of the session
-- (cqueues forgets its descriptor before it is closed).
function Parallel:release(session)
  if self.wrapped.release then self.wrapped:release(session) end
end

--- The run whose worker is running now (this one, or an outer one), or nil.
function Parallel:current()
  if self:in_worker() then return self.run end
  local outer = self.wrapped
  return getmetatable(outer) == Parallel and outer:current() or nil
end

--- The driver `d` wraps when it is a run's, else nil (for Transport's
-- driver chain).
function scheduler.wrapped(d)
  return getmetatable(d) == Parallel and d.wrapped or nil
end

-- A queue of workers to resume, with its own count (workers are appended
-- while it is being run).
local function push(ready, worker)
  ready.n = ready.n + 1
  ready[ready.n] = worker
end

function Scheduler:record(i, ok, value, err)
  if not ok then
    self.errors[i] = value
  else
    self.values[i] = value
    if value == nil and err ~= nil then self.errors[i] = err end
  end
  self.done = self.done + 1
  if self.errors[i] ~= nil then self.failed = self.failed + 1 end
  if self.progress then self.progress(self.done, self.total, self.failed) end
end

-- The body of every worker.
local function work(self, worker)
  while self.next <= self.total and not self.session:closed() do
    local i = self.next
    self.next = i + 1
    worker.index = i
    self:record(i, pcall(self.fns[i], self.args_for(i)))
  end
end

-- Starts a worker if functions are left; it runs at the next turn.
function Scheduler:spawn(ready)
  if self.next > self.total then return end
  local worker = {}
  worker.co = coroutine.create(function() return work(self, worker) end)
  self.workers_by_co[worker.co] = worker
  self.workers[#self.workers + 1] = worker
  self.live = self.live + 1
  push(ready, worker)
end

function Scheduler:retire(worker)
  self.workers_by_co[worker.co] = nil
  self.live = self.live - 1
end

function Scheduler:resume(worker, ready)
  local ok, what, arg = coroutine.resume(worker.co)
  if not ok then
    error(what, 0)      -- raised outside any function: by the progress callback
  elseif coroutine.status(worker.co) == "dead" then
    self:retire(worker)
  elseif what == "wait" then
    self.waiting[arg] = worker
  elseif what == "sleep" then
    self.sleepers[#self.sleepers + 1] = { worker = worker, deadline = arg }
  else
    -- A yield that is not ours cannot be resumed meaningfully: fail that
    -- function, abandon its worker, and start another.
    self:retire(worker)
    self:record(worker.index, false, "kf:parallel: function yielded a value the scheduler does not know ("
      .. tostring(what) .. "); run nested coroutines inside the function")
    self:spawn(ready)
  end
end

function Scheduler:wake_request(request, ready)
  local worker = self.waiting[request]
  if worker then
    self.waiting[request] = nil
    self.inflight = self.inflight - 1
    push(ready, worker)
  end
end

-- Moves the workers whose sleep is over to the ready queue.
function Scheduler:wake_sleepers(ready)
  if self.sleepers[1] == nil then return end
  local now = core.now()
  for i = #self.sleepers, 1, -1 do
    if self.sleepers[i].deadline <= now then
      push(ready, table.remove(self.sleepers, i).worker)
    end
  end
end

function Scheduler:next_timeout()
  local timeout = 1
  if self.sleepers[1] == nil then return timeout end
  local now = core.now()
  for _, s in ipairs(self.sleepers) do
    timeout = math.min(timeout, math.max(0, s.deadline - now))
  end
  return timeout
end

-- After kf:close() inside a function: the transfers in flight are canceled
-- already (their workers see that when resumed); functions not started are
-- not run.
function Scheduler:cancel_rest(ready)
  for i = self.next, self.total do
    self:record(i, true, nil, errors.canceled {
      message = "kf:parallel: the client was closed before this function ran" })
  end
  self.next = self.total + 1
  for request in pairs(self.waiting) do self:wake_request(request, ready) end
  for i = #self.sleepers, 1, -1 do push(ready, table.remove(self.sleepers, i).worker) end
end

function Scheduler:loop()
  local ready = { n = 0 }
  for _ = 1, math.min(self.limit, self.total) do self:spawn(ready) end
  while self.live > 0 do
    local i = 1
    while i <= ready.n do
      local worker = ready[i]
      ready[i] = nil
      self:resume(worker, ready)
      i = i + 1
    end
    ready.n = 0
    if self.live == 0 then break end
    if self.session:closed() then self:cancel_rest(ready) end
    self:wake_sleepers(ready)
    if ready.n == 0 then
      local timeout = self:next_timeout()
      if self.inflight > 0 then
        for _, request in ipairs(self.poller:poll(self.session, timeout)) do self:wake_request(request, ready) end
        if ready.n == 0 then
          -- Nothing reported: also catch a request finished by anyone else
          -- driving the session, so that no worker waits forever.
          for request in pairs(self.waiting) do
            if request:done() then self:wake_request(request, ready) end
          end
        end
      elseif timeout > 0 then
        self.poller:sleep(timeout)
      end
      self:wake_sleepers(ready)
    end
  end
  -- closed while the last workers waited: they ended without starting more
  if self.next <= self.total and self.session:closed() then self:cancel_rest(ready) end
end

--- A run of `fns` on `session`; see `kf:parallel`.  `args_for(i)` gives the
-- arguments of `fns[i]` (the client, then the index); `waiter` is the driver
-- that waits for the network (keyfactor.driver), `own` the driver the run's
-- one wraps (`run.driver`, to install on the transport for `run:run()`).
function scheduler.new(session, fns, opts, args_for, waiter, own)
  local self = setmetatable({
    session = session, poller = waiter, limit = opts.concurrency or 16, inflight = 0,
    fns = fns, args_for = args_for, next = 1, total = #fns,
    workers = {}, workers_by_co = {}, waiting = {}, sleepers = {},
    values = {}, errors = {}, live = 0, done = 0, failed = 0,
    progress = opts.progress,
  }, Scheduler)
  self.driver = setmetatable({ run = self, wrapped = own }, Parallel)
  return self
end

--- Runs the functions.  Returns values, errors: arrays in input order.
function Scheduler:run()
  local ok, err = pcall(self.loop, self)
  self.workers_by_co = {}
  for request in pairs(self.waiting) do request:cancel() end
  if not ok then error(err, 0) end
  return self.values, self.errors
end

return scheduler
