package sdk_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/knactor/knactor/sdk"
)

func Example() {
	type State struct {
		Value int64 `json:"value"`
	}
	type Add struct {
		By int64 `json:"by"`
	}
	a := sdk.NewActor[State]()
	sdk.Handle(a, "add", func(_ context.Context, t *sdk.Turn[State], p Add) (State, error) {
		if p.By < 0 {
			return State{}, sdk.Errorf(http.StatusBadRequest, "negative", "cannot add %d", p.By)
		}
		t.State.Value += p.By
		return t.State, nil
	})

	for _, envelope := range []string{
		`{"function":"counter","actor":"a","action":"add","state":{"value":40},"version":"v1","payload":{"by":2}}`,
		`{"function":"counter","actor":"a","action":"add","payload":{"by":-1}}`,
	} {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/invoke", strings.NewReader(envelope)))
		fmt.Println(rec.Code, rec.Body)
	}
	// Output:
	// 200 {"state":{"value":42},"reply":{"value":42}}
	// 400 {"error":{"status":400,"code":"negative","message":"cannot add -1"}}
}

func ExampleMain() {
	a := sdk.NewActor[map[string]string]()
	sdk.Handle(a, "put", func(_ context.Context, t *sdk.Turn[map[string]string], kv [2]string) (any, error) {
		if t.State == nil {
			t.State = map[string]string{}
		}
		t.State[kv[0]] = kv[1]
		return nil, nil
	})

	// The actor serves /v1/invoke; other paths are a stateless function.
	mux := http.NewServeMux()
	mux.Handle("/v1/invoke", a)
	mux.HandleFunc("/hello", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "hello")
	})
	sdk.Main(mux)
}
