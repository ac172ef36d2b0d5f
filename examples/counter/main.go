// Command counter is the counter actor, knactor's smallest stateful function.
//
// Each actor holds a count, {"value": <int>}, that starts at 0. Action "add" with payload
// {"by": <int>} adds to it and replies {"value": <new total>}; action "get" replies
// {"value": <total>}. It serves the function contract on $PORT.
package main

import (
	"context"
	"math"
	"net/http"

	"github.com/knactor/knactor/sdk"
)

// State is the state of one counter.
type State struct {
	Value int64 `json:"value"`
}

// AddPayload is the payload of action "add".
type AddPayload struct {
	By int64 `json:"by"`
}

// Reply is the reply of every action.
type Reply struct {
	Value int64 `json:"value"`
}

func main() {
	sdk.Main(newActor())
}

// newActor returns the counter actor.
func newActor() *sdk.Actor[State] {
	a := sdk.NewActor[State]()
	sdk.Handle(a, "add", add)
	sdk.Handle(a, "get", get)
	return a
}

// add adds p.By to the count.
func add(_ context.Context, t *sdk.Turn[State], p AddPayload) (Reply, error) {
	v := t.State.Value
	if p.By > 0 && v > math.MaxInt64-p.By || p.By < 0 && v < math.MinInt64-p.By {
		return Reply{}, sdk.Errorf(http.StatusUnprocessableEntity, "overflow", "adding %d to %d overflows a 64-bit integer", p.By, v)
	}
	t.State.Value += p.By
	return Reply{Value: t.State.Value}, nil
}

// get returns the count.
func get(_ context.Context, t *sdk.Turn[State], _ struct{}) (Reply, error) {
	return Reply{Value: t.State.Value}, nil
}
