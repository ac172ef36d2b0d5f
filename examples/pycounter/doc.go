// Package pycounter is the counter actor written in Python 3 with the standard library only
// (main.py), to show that a knactor function needs no SDK: any process that speaks the function
// contract (docs/protocol.md) over plain HTTP and JSON is one. It has the semantics of
// examples/counter, deployed as function "pycounter" by service.yaml.
//
// The package holds no Go code besides its test, which runs main.py as a real process (python3
// must be on PATH) and checks it with the conformance kit, the add and get semantics, keep-alive
// answers with a Content-Length, and a graceful exit on SIGTERM.
package pycounter
