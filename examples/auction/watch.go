package main

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/gorilla/websocket"
)

// watch prints the broadcasts to channel, one per line, until interrupted (SIGINT or SIGTERM
// ends it cleanly) or the router ends the session.
func watch(channel string, out io.Writer) error {
	base := cmp.Or(os.Getenv("KNACTOR_URL"), "http://127.0.0.1:8080")
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("KNACTOR_URL %q: %w", base, err)
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.Path = "/v1/channels/" + url.PathEscape(channel) + "/ws"
	header := http.Header{}
	if token := os.Getenv("KNACTOR_TOKEN"); token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	conn, _, err := websocket.DefaultDialer.Dial(u.String(), header)
	if err != nil {
		return fmt.Errorf("watching %s: %w", u, err)
	}
	defer conn.Close()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)
	stop := make(chan struct{}) // closed on a signal: the read error that follows is the end
	done := make(chan struct{}) // closed when watch returns: the signal goroutine ends
	defer close(done)
	go func() {
		select {
		case <-signals:
		case <-done:
			return
		}
		close(stop)
		_ = conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		conn.Close()
	}()
	fmt.Fprintf(os.Stderr, "watching %s\n", channel)
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			select {
			case <-stop:
				return nil
			default:
			}
			if websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				return nil
			}
			return fmt.Errorf("the session ended: %w", err)
		}
		fmt.Fprintf(out, "%s\n", msg)
	}
}
