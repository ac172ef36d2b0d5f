// Command server is the process proctest's tests start: it prints its working directory, serves
// 200 on /healthz at 127.0.0.1:$PORT and exits with $EXIT_CODE on SIGTERM. MODE=ignore-term makes
// it ignore SIGTERM, MODE=exit makes it exit with status 7 at once, MODE=no-listen makes it run
// without listening.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	wd, _ := os.Getwd()
	fmt.Printf("cwd=%s\n", wd)
	fmt.Fprintln(os.Stderr, "a line on stderr")
	term := make(chan os.Signal, 1)
	switch os.Getenv("MODE") {
	case "exit":
		os.Exit(7)
	case "no-listen":
		time.Sleep(time.Hour)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
	default:
		signal.Notify(term, syscall.SIGTERM)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	}))
	<-term
	code, _ := strconv.Atoi(os.Getenv("EXIT_CODE"))
	os.Exit(code)
}
