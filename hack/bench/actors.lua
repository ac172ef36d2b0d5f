-- wrk script for hack/bench-router.sh: stateful calls POST /v1/actors/counter/<id>/add with the
-- payload {"by":1}, each to an actor drawn at random from ACTORS actors (default 1000) named
-- ACTOR_PREFIX<n> (default "bench-<n>").
--
-- The requests are formatted once per thread in init, so a request costs wrk no more than a
-- fixed one; each thread draws from its own random sequence.

local threads = 0

-- setup runs in wrk's main thread once per thread: give each thread its own number.
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

-- init runs in each thread: format one request per actor.
function init(args)
  math.randomseed(7919 * (tid + 1))
  local n = tonumber(os.getenv("ACTORS") or "1000")
  local prefix = os.getenv("ACTOR_PREFIX") or "bench-"
  local headers = { ["Content-Type"] = "application/json" }
  reqs = {}
  for i = 1, n do
    reqs[i] = wrk.format("POST", "/v1/actors/counter/" .. prefix .. (i - 1) .. "/add", headers, '{"by":1}')
  end
  count = n
end

function request()
  return reqs[math.random(count)]
end
