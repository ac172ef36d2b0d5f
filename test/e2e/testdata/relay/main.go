// Command relay is a test function whose turns ask for effects and hand calls on.
//
//   - "fan" with {"function": F, "prefix": P, "count": N, "delay_ms": D} asks for N effects,
//     "add" {"by": 1} to actors P0..P(N-1) of function F, after D milliseconds.
//   - "pipe" with {"by": N, "route": [target, ...]} pipes {"by": N, "route": rest} to the first
//     target; "forward" forwards its payload, unchanged, to the first target of its route.
//   - "arm" with {"in_ms": N} sets the timer "t", which runs "ring" (counted in the state);
//     "slow-cancel" with {"ms": N} holds the actor's turn N ms, then cancels "t".
//
// The e2e tests count what arrives.
package main

import (
	"context"
	"net/http"
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

type routePayload struct {
	By    int          `json:"by"`
	Route []sdk.Target `json:"route"`
}

type state struct {
	Fans  int `json:"fans"`
	Hops  int `json:"hops"`
	Rings int `json:"rings"`
}

func main() {
	a := sdk.NewActor[state]()
	sdk.Handle(a, "fan", func(_ context.Context, t *sdk.Turn[state], p fanPayload) (int, error) {
		for i := range p.Count {
			t.Effect(sdk.Effect{Function: p.Function, Actor: p.Prefix + strconv.Itoa(i), Action: "add",
				Payload: map[string]int{"by": 1}, Delay: time.Duration(p.DelayMS) * time.Millisecond})
		}
		t.State.Fans++
		return t.State.Fans, nil
	})
	sdk.Handle(a, "pipe", func(_ context.Context, t *sdk.Turn[state], p routePayload) (routePayload, error) {
		if len(p.Route) == 0 {
			return routePayload{}, sdk.Errorf(http.StatusBadRequest, "bad_payload", "an empty route")
		}
		t.State.Hops++
		t.Pipe(p.Route[0])
		return routePayload{By: p.By, Route: p.Route[1:]}, nil
	})
	sdk.Handle(a, "forward", func(_ context.Context, t *sdk.Turn[state], p routePayload) (struct{}, error) {
		if len(p.Route) == 0 {
			return struct{}{}, sdk.Errorf(http.StatusBadRequest, "bad_payload", "an empty route")
		}
		t.State.Hops++
		t.Forward(p.Route[0])
		return struct{}{}, nil
	})
	sdk.Handle(a, "arm", func(_ context.Context, t *sdk.Turn[state], p struct {
		InMS int64 `json:"in_ms"`
	}) (struct{}, error) {
		t.SetTimer(sdk.Timer{Name: "t", Action: "ring", In: time.Duration(p.InMS) * time.Millisecond})
		return struct{}{}, nil
	})
	sdk.Handle(a, "slow-cancel", func(ctx context.Context, t *sdk.Turn[state], p struct {
		MS int64 `json:"ms"`
	}) (struct{}, error) {
		select {
		case <-time.After(time.Duration(p.MS) * time.Millisecond):
		case <-ctx.Done():
		}
		t.CancelTimer("t")
		return struct{}{}, nil
	})
	sdk.Handle(a, "ring", func(_ context.Context, t *sdk.Turn[state], _ struct{}) (int, error) {
		t.State.Rings++
		return t.State.Rings, nil
	})
	sdk.Main(a)
}
