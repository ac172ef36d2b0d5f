package sdk

import (
	"encoding/json"
	"fmt"
	"time"
)

// Timer limits of the contract (docs/protocol.md, "Timers").
const (
	// MaxTimers is the most timers one actor may have.
	MaxTimers = 64
	// MinTimerInterval is the shortest period of a repeating timer.
	MinTimerInterval = 100 * time.Millisecond
	// MaxTimerDelay is the furthest ahead a timer may be due, and its longest period.
	MaxTimerDelay = 366 * 24 * time.Hour
	// MaxTimerPayloadBytes bounds a timer's encoded payload.
	MaxTimerPayloadBytes = 64 << 10
)

// Timer is a durable, named timer of the actor: when it is due, the router runs Action with
// Payload as a turn of the actor, even after restarts, and from zero pods. Setting a timer of an
// existing name replaces it.
type Timer struct {
	// Name names the timer within its actor: 1 to 128 characters of [A-Za-z0-9_.-].
	Name string
	// Action is the action the timer runs; required.
	Action string
	// Payload is the action's payload, encoded with encoding/json; nil sends null.
	Payload any
	// In is how long from the turn's commit the timer is first due. At is an absolute time
	// instead; set at most one. A repeating timer with neither is first due Every from now.
	In time.Duration
	At time.Time
	// Every repeats the timer with this period (at least MinTimerInterval); 0 fires once. A
	// timer that missed several periods (the router was down) fires once for all of them.
	Every time.Duration
}

// TimerInfo is a timer as the router shows it to the function: Turn.Timers.
type TimerInfo struct {
	Name   string        `json:"name"`
	Due    time.Time     `json:"due"`
	Every  time.Duration `json:"-"`
	Action string        `json:"action"`
}

// UnmarshalJSON reads the contract's form, with every_ms.
func (ti *TimerInfo) UnmarshalJSON(b []byte) error {
	type plain TimerInfo
	var w struct {
		plain
		EveryMS int64 `json:"every_ms"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*ti = TimerInfo(w.plain)
	ti.Every = time.Duration(w.EveryMS) * time.Millisecond
	return nil
}

// Timers returns the actor's timers as they were when the turn began, ordered by due time.
func (t *Turn[S]) Timers() []TimerInfo { return t.timers }

// FiredTimer returns the name of the timer whose firing this turn is, and the time it was due;
// ok is false for a turn that is not a timer's.
func (t *Turn[S]) FiredTimer() (name string, due time.Time, ok bool) {
	name = t.Metadata["timer"]
	if name == "" {
		return "", time.Time{}, false
	}
	due, err := time.Parse(time.RFC3339Nano, t.Metadata["timer_due"])
	return name, due, err == nil
}

// SetTimer sets (or replaces) the actor's timer tm when the turn commits.
func (t *Turn[S]) SetTimer(tm Timer) { t.timerOps = append(t.timerOps, timerChange{set: tm}) }

// CancelTimer cancels the actor's timer called name when the turn commits; a timer that is due
// meanwhile does not fire. Cancelling a timer that does not exist does nothing.
func (t *Turn[S]) CancelTimer(name string) {
	t.timerOps = append(t.timerOps, timerChange{cancel: name})
}

// timerChange is one SetTimer or CancelTimer.
type timerChange struct {
	set    Timer
	cancel string
}

// wireTimer is a timer change as the contract encodes it.
type wireTimer struct {
	Name    string          `json:"name"`
	Cancel  bool            `json:"cancel,omitzero"`
	Action  string          `json:"action,omitzero"`
	Payload json.RawMessage `json:"payload,omitzero"`
	InMS    *int64          `json:"in_ms,omitzero"`
	At      string          `json:"at,omitzero"`
	EveryMS int64           `json:"every_ms,omitzero"`
}

// wireTimers validates and encodes the turn's timer changes.
func (t *Turn[S]) wireTimers() ([]wireTimer, error) {
	if len(t.timerOps) > MaxTimers {
		return nil, fmt.Errorf("%d timer changes, at most %d are allowed", len(t.timerOps), MaxTimers)
	}
	var out []wireTimer
	for _, op := range t.timerOps {
		if op.cancel != "" {
			if !validAction(op.cancel) {
				return nil, fmt.Errorf("cancel timer: invalid name %q", op.cancel)
			}
			out = append(out, wireTimer{Name: op.cancel, Cancel: true})
			continue
		}
		w, err := op.set.wire()
		if err != nil {
			return nil, fmt.Errorf("timer %q: %w", op.set.Name, err)
		}
		out = append(out, w)
	}
	return out, nil
}

func (tm Timer) wire() (wireTimer, error) {
	switch {
	case !validAction(tm.Name):
		return wireTimer{}, fmt.Errorf("invalid name %q", tm.Name)
	case !validAction(tm.Action):
		return wireTimer{}, fmt.Errorf("invalid action name %q", tm.Action)
	case tm.In != 0 && !tm.At.IsZero():
		return wireTimer{}, fmt.Errorf("set In or At, not both")
	case tm.In < 0 || tm.In > MaxTimerDelay:
		return wireTimer{}, fmt.Errorf("In %v is outside 0 to %v", tm.In, MaxTimerDelay)
	case tm.Every != 0 && (tm.Every < MinTimerInterval || tm.Every > MaxTimerDelay):
		return wireTimer{}, fmt.Errorf("Every %v is outside %v to %v", tm.Every, MinTimerInterval, MaxTimerDelay)
	}
	payload, err := json.Marshal(tm.Payload)
	if err != nil {
		return wireTimer{}, fmt.Errorf("encode payload: %w", err)
	}
	if len(payload) > MaxTimerPayloadBytes {
		return wireTimer{}, fmt.Errorf("payload is %d bytes, over %d", len(payload), MaxTimerPayloadBytes)
	}
	w := wireTimer{Name: tm.Name, Action: tm.Action, Payload: payload, EveryMS: tm.Every.Milliseconds()}
	switch {
	case !tm.At.IsZero():
		w.At = tm.At.UTC().Format(time.RFC3339Nano)
	case tm.In > 0 || tm.Every == 0:
		ms := tm.In.Milliseconds()
		w.InMS = &ms
	}
	return w, nil
}
