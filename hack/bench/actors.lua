-- wrk script for hack/bench-router.sh: stateful calls POST /v1/actors/counter/<id>/add with the
-- payload {"by":1}, each to an actor drawn at random from ACTORS actors (default 1000) named
-- ACTOR_PREFIX<n> (default "bench-<n>"). With IDEM=1 every call carries an Idempotency-Key of
-- its own ("<start time>-<thread>-<n>"), as a client that names each call does.
--
-- The requests are formatted once per thread in init, so a request costs wrk no more than a
-- fixed one (with IDEM=1, one string concatenation for the key); each thread draws from its own
-- random sequence.

local threads = 0

-- setup runs in wrk's main thread once per thread: give each thread its own number.
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

-- init runs in each thread: format one request per actor (split around the key's place when
-- IDEM=1).
function init(args)
  math.randomseed(7919 * (tid + 1))
  local n = tonumber(os.getenv("ACTORS") or "1000")
  local prefix = os.getenv("ACTOR_PREFIX") or "bench-"
  idem = os.getenv("IDEM") == "1"
  local headers = { ["Content-Type"] = "application/json" }
  if idem then
    headers["Idempotency-Key"] = "@KEY@"
  end
  heads, tails = {}, {}
  for i = 1, n do
    local r = wrk.format("POST", "/v1/actors/counter/" .. prefix .. (i - 1) .. "/add", headers, '{"by":1}')
    if idem then
      local at = string.find(r, "@KEY@", 1, true)
      heads[i], tails[i] = string.sub(r, 1, at - 1), string.sub(r, at + 5)
    else
      heads[i] = r
    end
  end
  count = n
  seq = 0
  -- Keys must not repeat across wrk runs either (a repeat would be a replay): the start time
  -- tells this run's keys from the warm-up's and the other connection counts'.
  keyprefix = os.time() .. "-" .. tid .. "-"
end

function request()
  local i = math.random(count)
  if not idem then
    return heads[i]
  end
  seq = seq + 1
  return heads[i] .. keyprefix .. seq .. tails[i]
end
