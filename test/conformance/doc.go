// Package conformance checks a running knactor function against the function contract
// (docs/protocol.md) over real HTTP, whatever language the function is written in.
//
// In a Go test, start the function and call Run:
//
//	conformance.Run(t, "http://127.0.0.1:8080", conformance.Options{
//		Actions: []conformance.Action{{Name: "add", Payload: json.RawMessage(`{"by":2}`)}},
//	})
//
// Outside Go, use the conform command in cmd/conform, which runs the same checks:
//
//	go run ./test/conformance/cmd/conform -url http://127.0.0.1:8080 -action 'add={"by":2}'
package conformance
