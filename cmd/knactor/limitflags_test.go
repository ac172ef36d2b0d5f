package main

import (
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/knactor/knactor/router"
)

func TestClientLimitFlags(t *testing.T) {
	var cfg router.Config
	fs := pflag.NewFlagSet("router", pflag.ContinueOnError)
	registerClientLimitFlags(fs, &cfg)
	if cfg.MaxConns != router.DefaultMaxConns || cfg.MaxConnsPerIP != 0 || cfg.MaxWebSocketSessions != router.DefaultMaxWebSocketSessions ||
		cfg.ReadTimeout != router.DefaultReadTimeout || cfg.WriteTimeout != router.DefaultWriteTimeout || cfg.IdleTimeout != router.DefaultIdleTimeout {
		t.Fatalf("defaults: %+v", cfg)
	}
	if err := fs.Parse([]string{"--read-timeout=5s", "--write-timeout=6s", "--idle-timeout=7s",
		"--max-conns=100", "--max-conns-per-ip=10", "--max-websocket-sessions=20"}); err != nil {
		t.Fatal(err)
	}
	if cfg.ReadTimeout != 5*time.Second || cfg.WriteTimeout != 6*time.Second || cfg.IdleTimeout != 7*time.Second ||
		cfg.MaxConns != 100 || cfg.MaxConnsPerIP != 10 || cfg.MaxWebSocketSessions != 20 {
		t.Fatalf("parsed: %+v", cfg)
	}
	cfg.MaxConnsPerIP = -1
	cfg.SetDefaults()
	if err := cfg.Validate(); err == nil {
		t.Fatal("a negative --max-conns-per-ip is accepted")
	}
}
