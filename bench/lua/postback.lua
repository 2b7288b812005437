-- Advertiser postbacks for wrk: mostly new orders, some duplicates (a retry of an
-- earlier postback, sent again exactly), some bad input (orderamount=abc).
-- RefIDs come from a file, one a line, made by real clicks before the run.
-- Order numbers are SEED-THREAD-COUNTER, so they are unique across runs and threads.
--
--   wrk -s bench/lua/postback.lua http://127.0.0.1:PORT -- REFID_FILE SEED DUP% BAD%

local threads = 0
local refids = {}
local recent = {}  -- ring of earlier new-order requests, replayed as duplicates
local ring = 1024
local filled = 0
local counter = 0
local prefix = ""
local dup_pct = 10
local bad_pct = 5
local amounts = { "49.90", "120.00", "15.5", "0", "249.99", "8.00" }

function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      refids[#refids + 1] = line
    end
  end
  if #refids == 0 then
    error("no RefIDs in " .. tostring(args[1]))
  end
  local seed = tonumber(args[2]) or os.time()
  dup_pct = tonumber(args[3]) or dup_pct
  bad_pct = tonumber(args[4]) or bad_pct
  math.randomseed(seed + (thread_no or 1))
  prefix = string.format("ord-%d-%d-", seed, thread_no or 1)
end

local function postback(refid, amount, order)
  return wrk.format(
    "GET",
    "/postback?refid=" .. refid .. "&orderamount=" .. amount .. "&ordernumber=" .. order
      .. "&coupon=&currency=USD&geo=US&commissionid="
  )
end

function request()
  counter = counter + 1
  local roll = math.random(100)
  local refid = refids[math.random(#refids)]
  if roll <= bad_pct then
    return postback(refid, "abc", prefix .. counter)
  end
  if roll <= bad_pct + dup_pct and filled > 0 then
    return recent[math.random(filled)]
  end
  local req = postback(refid, amounts[math.random(#amounts)], prefix .. counter)
  if filled < ring then
    filled = filled + 1
    recent[filled] = req
  else
    recent[math.random(ring)] = req
  end
  return req
end
