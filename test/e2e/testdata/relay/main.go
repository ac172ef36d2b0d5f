// Command relay is a test function whose turns ask for effects: action "fan" with
// {"function": F, "prefix": P, "count": N, "delay_ms": D} asks for N effects, "add" {"by": 1} to
// actors P0..P(N-1) of function F, after D milliseconds. The e2e tests count what arrives.
package main

import (
	"context"
	"strconv"
	"time"

	"github.com/knactor/knactor/sdk"
)

type fanPayload struct {
	Function string `json:"function"`
	Prefix   string `json:"prefix"`
	Count    int    `json:"count"`
	DelayMS  int64  `json:"delay_ms"`
}

func main() {
	a := sdk.NewActor[struct {
		Fans int `json:"fans"`
	}]()
	sdk.Handle(a, "fan", func(_ context.Context, t *sdk.Turn[struct {
		Fans int `json:"fans"`
	}], p fanPayload) (int, error) {
		for i := range p.Count {
			t.Effect(sdk.Effect{Function: p.Function, Actor: p.Prefix + strconv.Itoa(i), Action: "add",
				Payload: map[string]int{"by": 1}, Delay: time.Duration(p.DelayMS) * time.Millisecond})
		}
		t.State.Fans++
		return t.State.Fans, nil
	})
	sdk.Main(a)
}
