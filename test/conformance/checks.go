package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// largeStateBytes is the size of the padding the large_state check adds to the sample state.
const largeStateBytes = 512 << 10

// binaryData is not valid UTF-8, so it cannot be JSON.
var binaryData = []byte{0xff, 0xfe, 0x00, 0x01, '{'}

// Checks returns the conformance checks for the function at baseURL, in the order they should
// run. It returns an error if opts are invalid.
func Checks(baseURL string, opts Options) ([]Check, error) {
	k, err := newKit(baseURL, opts)
	if err != nil {
		return nil, err
	}
	checks := []Check{
		{"healthz", k.healthz},
		{"malformed_envelope", k.malformedEnvelope},
		{"unknown_action", k.unknownAction},
	}
	for _, a := range k.opts.Actions {
		checks = append(checks,
			Check{"action/" + a.Name, func(ctx context.Context) error { return k.action(ctx, a) }},
			Check{"deterministic/" + a.Name, func(ctx context.Context) error { return k.deterministic(ctx, a) }},
		)
	}
	return append(checks,
		Check{"unknown_fields", k.unknownFields},
		Check{"null_state", k.nullState},
		Check{"concurrent_actors", k.concurrentActors},
		Check{"large_state", k.largeState},
		Check{"binary_state", k.binaryState},
		Check{"binary_payload", k.binaryPayload},
	), nil
}

// healthz checks that GET /healthz answers 200.
func (k *kit) healthz(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.base+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := k.opts.Client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /healthz = %d, want 200", resp.StatusCode)
	}
	return nil
}

// malformedEnvelope checks that bodies which are not a JSON object get a 4xx error form.
func (k *kit) malformedEnvelope(ctx context.Context) error {
	bodies := []string{"", "not json", `{"function":"f","actor":`, `[1,2,3]`, `"envelope"`}
	var errs []error
	for _, body := range bodies {
		a, err := k.post(ctx, []byte(body))
		if err == nil {
			err = fail(a, 0)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("body %q: %w", body, err))
		}
	}
	return errors.Join(errs...)
}

// unknownAction checks that an unknown action gets the error form with status 404 and code
// unknown_action.
func (k *kit) unknownAction(ctx context.Context) error {
	a, err := k.invoke(ctx, k.newEnvelope("conformance/unknown-action", Action{Name: "conformance.no-such-action"}))
	if err != nil {
		return err
	}
	if err := fail(a, http.StatusNotFound); err != nil {
		return err
	}
	if a.Error.Code != "unknown_action" {
		return fmt.Errorf("got error code %q, want unknown_action", a.Error.Code)
	}
	return nil
}

// action checks that act succeeds on a new actor (and passes its Expect) and on an actor with
// the sample state.
func (k *kit) action(ctx context.Context, act Action) error {
	a, err := k.invoke(ctx, k.newEnvelope("conformance/new", act))
	if err != nil {
		return fmt.Errorf("new actor: %w", err)
	}
	if err := answered(a, act.RefusesNew); err != nil {
		return fmt.Errorf("new actor: %w", err)
	}
	if act.Expect != nil && act.RefusesNew == "" {
		if err := act.Expect(a); err != nil {
			return fmt.Errorf("new actor: unexpected answer %s: %w", clip(a.Body), err)
		}
	}
	a, err = k.invoke(ctx, k.existingEnvelope("conformance/ü ☃ existing", act))
	if err != nil {
		return fmt.Errorf("existing actor: %w", err)
	}
	if err := answered(a, act.RefusesExisting); err != nil {
		return fmt.Errorf("existing actor: %w", err)
	}
	return nil
}

// deterministic checks that re-running a turn, as the router does after a version conflict, gives
// the same answer.
func (k *kit) deterministic(ctx context.Context, act Action) error {
	for _, env := range []*envelope{
		k.newEnvelope("conformance/deterministic-new", act),
		k.existingEnvelope("conformance/deterministic-existing", act),
	} {
		if err := k.sameAnswer(ctx, env, env.retry()); err != nil {
			return fmt.Errorf("actor %q: %w", env.Actor, err)
		}
	}
	return nil
}

// unknownFields checks that unknown envelope fields do not change the answer.
func (k *kit) unknownFields(ctx context.Context) error {
	env := k.existingEnvelope("conformance/unknown-fields", k.opts.Actions[0])
	base, err := k.invoke(ctx, env)
	if err != nil {
		return err
	}
	body, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("encode envelope: %w", err)
	}
	extra := `{"conformance_future":{"list":[1,"two",null],"flag":true},"zz_future":"x",`
	a, err := k.post(ctx, append([]byte(extra), body[1:]...))
	if err != nil {
		return fmt.Errorf("with unknown fields: %w", err)
	}
	return same(base, a)
}

// nullState checks that a new actor's absent state and null state get the same answer.
func (k *kit) nullState(ctx context.Context) error {
	absent := k.newEnvelope("conformance/null-state", k.opts.Actions[0])
	null := *absent
	null.State = json.RawMessage(`null`)
	return k.sameAnswer(ctx, absent, &null)
}

// concurrentActors checks that invocations of distinct actors sent at once all succeed.
func (k *kit) concurrentActors(ctx context.Context) error {
	errs := make([]error, k.opts.Concurrency)
	var wg sync.WaitGroup
	for i := range errs {
		env := k.newEnvelope(fmt.Sprintf("conformance/concurrent-%d", i), k.opts.Actions[0])
		wg.Go(func() {
			a, err := k.invoke(ctx, env)
			if err == nil {
				err = succeed(a)
			}
			if err != nil {
				errs[i] = fmt.Errorf("actor %q: %w", env.Actor, err)
			}
		})
	}
	wg.Wait()
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d invocations failed, the first: %w", len(failed), len(errs), failed[0])
	}
	return nil
}

// largeState checks that a stored state of over 512 KiB is accepted.
func (k *kit) largeState(ctx context.Context) error {
	var state map[string]json.RawMessage
	if err := json.Unmarshal(k.opts.State, &state); err != nil || state == nil {
		return fmt.Errorf("%w: the sample state is not a JSON object", ErrSkipped)
	}
	state["conformance_padding"] = json.RawMessage(`"` + strings.Repeat("x", largeStateBytes) + `"`)
	padded, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	env := k.existingEnvelope("conformance/large-state", k.opts.Actions[0])
	env.State = padded
	a, err := k.invoke(ctx, env)
	if err != nil {
		return err
	}
	return answered(a, k.opts.Actions[0].RefusesExisting)
}

// binaryState checks that a stored state that is not JSON (state_b64) gets a success answer or a
// 4xx error form.
func (k *kit) binaryState(ctx context.Context) error {
	env := k.newEnvelope("conformance/binary-state", k.opts.Actions[0])
	env.StateB64, env.Version = binaryData, "conformance-v1"
	_, err := k.invoke(ctx, env)
	return err
}

// binaryPayload checks that a payload that is not JSON (payload_b64) gets a success answer or a
// 4xx error form.
func (k *kit) binaryPayload(ctx context.Context) error {
	env := k.newEnvelope("conformance/binary-payload", k.opts.Actions[0])
	env.Payload, env.PayloadB64 = nil, binaryData
	_, err := k.invoke(ctx, env)
	return err
}

// sameAnswer sends a and b and checks that they get the same answer.
func (k *kit) sameAnswer(ctx context.Context, a, b *envelope) error {
	first, err := k.invoke(ctx, a)
	if err != nil {
		return err
	}
	second, err := k.invoke(ctx, b)
	if err != nil {
		return err
	}
	return same(first, second)
}
