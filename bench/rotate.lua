-- wrk script: every request carries a different session cookie, taken in turn from a file
-- (one cookie value per line), each wrk thread starting at a different offset.
-- Usage: wrk ... -s bench/rotate.lua URL -- COOKIE_FILE [COOKIE_NAME]
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local cookies, n, i, name = {}, 0, 0, "_wxgate"
function init(args)
  local path = args[1]
  name = args[2] or name
  for line in io.lines(path) do
    if #line > 0 then
      n = n + 1
      cookies[n] = name .. "=" .. line
    end
  end
  if n == 0 then
    error("no cookies in " .. path)
  end
  -- `tid` is set per thread by setup() (thread:set makes it a global of the thread's state).
  local t = tonumber(tid) or 0
  i = math.floor(n * t / 8) % n
end

function request()
  i = i % n + 1
  wrk.headers["Cookie"] = cookies[i]
  return wrk.format()
end
