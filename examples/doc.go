// Package examples holds example functions, each a directory with its code and a Knative
// Service manifest (service.yaml) that knactor deploys locally and on a cluster alike:
//
//   - counter: the smallest actor, a count per actor id (Go, on the sdk)
//   - chat: a chat room per actor id, used over the router's WebSocket endpoint (Go, on the sdk)
//   - pycounter: the counter in Python 3 with the standard library only, no SDK
//   - hello: a stateless function reached through the router's pass-through path (Go, net/http)
package examples
