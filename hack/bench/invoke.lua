-- wrk script for hack/bench-router.sh: POSTs one fixed invocation envelope to the counter
-- function's /v1/invoke, the request the router sends for a cache-hit call of "add", so the
-- function's own share of a stateful call can be measured without the router.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"function":"counter","actor":"bench-1","action":"add","state":{"value":41},' ..
  '"version":"1","payload":{"by":1},"metadata":{"request_id":"0a1b2c3d4e5f-1",' ..
  '"attempt":"1","deadline":"2030-01-01T00:00:30.123456789Z"}}'
