-- Tracking-link clicks for wrk: GET /c/CODE?sub1=..&sub2=..&sub3=.. with varying sub
-- values, a browser User-Agent and a Referer, like a visitor following an ad.
-- The same requests go to the nginx and bare ASGI baselines (they answer any path).
-- ADDRESSES "many" (the default): each request comes from another visitor address, in
-- an X-Forwarded-For header as a load balancer in front of the tracker sets it (the
-- tracker trusts 127.0.0.1 as its proxy); "one": no header, every click from 127.0.0.1.
--
--   wrk -s bench/lua/click.lua http://127.0.0.1:PORT -- CODE SEED [many|one]

local requests = {}
local count = 2048
local i = 0
local many = true

function init(args)
  local code = args[1] or "bench"
  math.randomseed(tonumber(args[2]) or os.time())
  many = (args[3] or "many") ~= "one"
  local sources = { "fb", "google", "tiktok", "native", "email", "push%20feed" }
  wrk.headers["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
    .. "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
  wrk.headers["Referer"] = "https://news.example.net/2024/05/article-about-things"
  for k = 1, count do
    local path = string.format(
      "/c/%s?sub1=%s&sub2=cr%04d&sub3=%08x&sub4=spring_sale",
      code,
      sources[math.random(#sources)],
      math.random(0, 9999),
      math.random(0, 0x7fffffff)
    )
    -- pre-formatted once: the load generator spends its time sending, not building
    requests[k] = wrk.format("GET", path)
    if many then
      requests[k] = requests[k]:sub(1, -3)  -- the header goes before the blank line
    end
  end
end

function request()
  i = i % count + 1
  if not many then
    return requests[i]
  end
  -- a public-looking IPv4 address (first octet 11-223 but 127), random every request
  local first = math.random(11, 222)
  if first >= 127 then
    first = first + 1
  end
  return requests[i] .. "X-Forwarded-For: " .. first .. "." .. math.random(0, 255) .. "."
    .. math.random(0, 255) .. "." .. math.random(1, 254) .. "\r\n\r\n"
end
