-- wrk script for hack/bench-router.sh: every request is a POST of the same ~50-byte JSON body to
-- the URL's path (the hello function directly, through nginx, or through the router's
-- pass-through path).
wrk.method = "POST"
wrk.body = '{"user":"bench","op":"hello","n":12345,"ok":true}'
wrk.headers["Content-Type"] = "application/json"
