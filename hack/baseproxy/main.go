// Command baseproxy is the floor of knactor's pass-through on a machine: a reverse proxy built
// from the same fasthttp server and client as the router, with the same client settings, and
// nothing else (no auth, limits, routing, statistics, metrics or tracing). hack/bench-router.sh
// measures it as target (b2) beside nginx (b) and the router (c), so a run says how much of the
// gap between the router and nginx is the stack and how much is knactor's own work.
//
// Usage: baseproxy -listen 127.0.0.1:8081 -upstream 127.0.0.1:8080
package main

import (
	"flag"
	"log"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to serve on")
	upstream := flag.String("upstream", "", "host:port every request is proxied to")
	flag.Parse()
	if *upstream == "" {
		log.Fatal("baseproxy: -upstream is required")
	}
	// The router's pass-through client, as router.New configures it (passClient).
	client := &fasthttp.HostClient{
		Addr:                      *upstream,
		Name:                      "baseproxy",
		NoDefaultUserAgentHeader:  true,
		MaxConns:                  1024,
		MaxConnWaitTimeout:        30 * time.Second,
		MaxIdleConnDuration:       30 * time.Second,
		ReadBufferSize:            16 << 10,
		DisablePathNormalizing:    true,
		MaxIdemponentCallAttempts: 1,
	}
	proxy := func(ctx *fasthttp.RequestCtx) {
		req := &ctx.Request
		req.SetHost(*upstream)
		if err := client.DoTimeout(req, &ctx.Response, 30*time.Second); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusBadGateway)
		}
	}
	// The router's server settings (router.New), less what only the router needs.
	srv := &fasthttp.Server{
		Handler:                      proxy,
		Name:                         "baseproxy",
		ReadTimeout:                  30 * time.Second,
		WriteTimeout:                 30 * time.Second,
		IdleTimeout:                  90 * time.Second,
		DisablePreParseMultipartForm: true,
		NoDefaultContentType:         true,
	}
	log.Fatal(srv.ListenAndServe(*listen))
}
