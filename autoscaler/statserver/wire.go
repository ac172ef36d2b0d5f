package statserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// MaxNameBytes bounds a router's and a function's name in a message: 253 bytes is the longest
// Kubernetes object name (a DNS subdomain), and both are Kubernetes object names (a pod, a
// Knative Service).
const MaxNameBytes = 253

// Message is one WebSocket text frame from a router to the autoscaler (see the package
// documentation for the wire format).
type Message struct {
	// Router is the sender's identity: its pod name.
	Router string `json:"router"`
	// Stats is one entry per function, each covering the router's window since its previous
	// stats message. Empty in a poke, and in a message from a router that knows no function.
	Stats []Stat `json:"stats,omitempty"`
	// Poke names a function for which a call found no ready pod.
	Poke string `json:"poke,omitempty"`
}

// Stat is one function's statistics over one of a router's windows: a stats.Snapshot on the
// wire.
type Stat struct {
	Function string `json:"function"`
	// Time is the end of the window, on the router's clock (RFC 3339 with nanoseconds).
	Time time.Time `json:"time"`
	// WindowSeconds is the length of the window.
	WindowSeconds float64 `json:"windowSeconds"`
	// InFlight is the requests in flight at Time.
	InFlight int `json:"inFlight"`
	// AverageConcurrency is the time-weighted average of requests in flight over the window.
	AverageConcurrency float64 `json:"averageConcurrency"`
	// Requests is the requests that began in the window.
	Requests uint64 `json:"requests"`
	// ActiveActors is the distinct actors that had a request in flight in the window.
	ActiveActors int `json:"activeActors"`
}

// errInvalid marks a message that breaks the wire format.
var errInvalid = errors.New("invalid stats message")

// Validate reports whether m follows the wire format's rules: a router name, function names
// of 1 to MaxNameBytes bytes, each function at most once, no negative or non-finite number.
func (m *Message) Validate() error {
	if err := checkName("router", m.Router); err != nil {
		return err
	}
	if m.Poke != "" {
		if err := checkName("poke", m.Poke); err != nil {
			return err
		}
	}
	seen := make(map[string]struct{}, len(m.Stats))
	for i := range m.Stats {
		st := &m.Stats[i]
		if err := checkName(fmt.Sprintf("stats[%d].function", i), st.Function); err != nil {
			return err
		}
		if _, dup := seen[st.Function]; dup {
			return fmt.Errorf("%w: function %q appears twice", errInvalid, st.Function)
		}
		seen[st.Function] = struct{}{}
		switch {
		case !finiteNonNegative(st.WindowSeconds):
			return fmt.Errorf("%w: %s: windowSeconds %v must be a non-negative number", errInvalid, st.Function, st.WindowSeconds)
		case !finiteNonNegative(st.AverageConcurrency):
			return fmt.Errorf("%w: %s: averageConcurrency %v must be a non-negative number", errInvalid, st.Function, st.AverageConcurrency)
		case st.InFlight < 0:
			return fmt.Errorf("%w: %s: inFlight %d is negative", errInvalid, st.Function, st.InFlight)
		case st.ActiveActors < 0:
			return fmt.Errorf("%w: %s: activeActors %d is negative", errInvalid, st.Function, st.ActiveActors)
		}
	}
	return nil
}

func checkName(field, name string) error {
	if name == "" || len(name) > MaxNameBytes {
		return fmt.Errorf("%w: %s must be 1 to %d bytes, got %d", errInvalid, field, MaxNameBytes, len(name))
	}
	return nil
}

func finiteNonNegative(x float64) bool { return x >= 0 && !math.IsInf(x, 0) }

// decode parses and validates one frame.
func decode(data []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return Message{}, fmt.Errorf("%w: %w", errInvalid, err)
	}
	if err := m.Validate(); err != nil {
		return Message{}, err
	}
	return m, nil
}

// seconds converts a non-negative number of seconds to a Duration, saturating instead of
// overflowing (a router back from a days-long partition may report a window that long).
func seconds(s float64) time.Duration {
	if d := s * float64(time.Second); d < math.MaxInt64 {
		return time.Duration(d)
	}
	return math.MaxInt64
}
