package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/gorilla/websocket"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

const (
	// wsWriteWait bounds sending one message or the close frame.
	wsWriteWait = 10 * time.Second
	// wsCloseWait is how long a closing session waits for the router's close frame.
	wsCloseWait = 5 * time.Second
	// maxLineBytes bounds one input line: the router's largest payload (1 MiB by default) and
	// then some.
	maxLineBytes = 8 << 20
)

func newWSCommand(g *globals) *cobra.Command {
	var (
		output    string
		subscribe bool
		channel   string
	)
	cmd := &cobra.Command{
		Use:   "ws FUNCTION ID | ws --channel CHANNEL",
		Short: "Talk to an actor over an interactive WebSocket session",
		Long: `Open a WebSocket session pinned to the actor ID of FUNCTION (GET /v1/actors/FUNCTION/ID/ws).

Each line of standard input, ACTION [JSON], is one turn of the actor; its reply is printed when
it comes, one per line, and a failed turn's error goes to standard error. Empty lines and
lines starting with # are skipped. With --subscribe, every committed change of the actor's
state, by any caller, is printed too: "state changed (version V): STATE" or
"state deleted (version V)".

End of input (Ctrl-D) waits for the outstanding replies and closes the session cleanly;
Ctrl-C closes it at once. The exit status is 1 when a turn failed or a line was not
ACTION [JSON].

-o json prints every message of the router as it came, one JSON object per line
({"id","version","reply"}, {"id","error"}, {"event":"state"|"deleted",...}); -o yaml prints
each as a YAML document.

--channel CHANNEL watches a channel instead (GET /v1/channels/CHANNEL/ws): every broadcast to
its subscribers is printed as "CHANNEL ACTION PAYLOAD" (or as the router sent it with -o json),
until Ctrl-C.`,
		Example: `  kn-actor ws counter alice
  add {"by":2}
  get
  ^D
  printf 'add {"by":1}\nget\n' | kn-actor ws counter alice --subscribe -o json
  kn-actor ws --channel auction.lot-1`,
		Args: func(cmd *cobra.Command, args []string) error {
			if channel != "" {
				return argsBetween(0, 0, "(no arguments with --channel)")(cmd, args)
			}
			return argsBetween(2, 2, "FUNCTION ID")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFormat(output)
			if err != nil {
				return err
			}
			if channel != "" {
				c, err := g.newClient()
				if err != nil {
					return err
				}
				s := &wsSession{c: c, channel: channel, format: f, out: cmd.OutOrStdout(), errw: cmd.ErrOrStderr()}
				return s.watch(cmd.Context())
			}
			fn, id := args[0], args[1]
			if err := checkActor(fn, id); err != nil {
				return err
			}
			c, err := g.newClient()
			if err != nil {
				return err
			}
			s := &wsSession{c: c, function: fn, id: id, format: f, out: cmd.OutOrStdout(), errw: cmd.ErrOrStderr()}
			return s.run(cmd.Context(), g.stdin, subscribe)
		},
	}
	cmd.Flags().BoolVar(&subscribe, "subscribe", false, "also print every change of the actor's state, by any caller")
	cmd.Flags().StringVar(&channel, "channel", "", "watch the broadcasts to a channel instead of talking to an actor")
	addOutputFlag(cmd, &output, "replies as they came, state changes described")
	return cmd
}

// wsOutgoing is one turn sent over the session (the router's wsRequest).
type wsOutgoing struct {
	ID      int             `json:"id"`
	Action  string          `json:"action"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// wsIncoming is any message of the router: a reply, an error, or a state push.
type wsIncoming struct {
	ID       json.RawMessage `json:"id"`
	Version  string          `json:"version"`
	Reply    json.RawMessage `json:"reply"`
	ReplyB64 []byte          `json:"reply_b64"`
	Error    *struct {
		Status  int    `json:"status"`
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Event    string          `json:"event"`
	State    json.RawMessage `json:"state"`
	StateB64 []byte          `json:"state_b64"`
	// A broadcast on a channel's session.
	Channel string          `json:"channel"`
	Action  string          `json:"action"`
	Payload json.RawMessage `json:"payload"`
}

// parseWSLine parses one input line, ACTION [JSON]. An empty or # line gives action "".
func parseWSLine(line string) (action string, payload json.RawMessage, err error) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return "", nil, nil
	}
	action, rest := line, ""
	if i := strings.IndexFunc(line, unicode.IsSpace); i >= 0 {
		action, rest = line[:i], strings.TrimSpace(line[i:])
	}
	if !validAction.MatchString(action) {
		return "", nil, fmt.Errorf("%q: want ACTION [JSON], the action 1-128 characters of A-Z a-z 0-9 _ . -", line)
	}
	if rest == "" {
		return action, nil, nil
	}
	if !json.Valid([]byte(rest)) {
		return "", nil, fmt.Errorf("%q: the payload after %q is not JSON", line, action)
	}
	return action, json.RawMessage(rest), nil
}

// wsSession is one `kn-actor ws` session.
type wsSession struct {
	c            *client
	function, id string
	channel      string // set: the session watches this channel
	format       format
	out, errw    io.Writer
	mu           sync.Mutex // serializes printing (out and errw may be one terminal)
}

// run dials the actor's session and runs it until input ends and every turn is answered, the
// router ends it, or ctx ends.
func (s *wsSession) run(ctx context.Context, stdin io.Reader, subscribe bool) error {
	conn, err := s.dial(ctx, subscribe)
	if err != nil {
		return err
	}
	defer conn.Close()
	if isTerminal(stdin) {
		fmt.Fprintf(s.errw, "Connected to actor %q of function %q: type ACTION [JSON] per line, Ctrl-D to end.\n", s.id, s.function)
	}

	done := make(chan struct{})
	defer close(done)
	replies := make(chan bool, 1) // one per reply: whether the turn failed
	readErr := make(chan error, 1)
	go s.read(conn, replies, readErr, done)
	lines := make(chan string)
	scanErr := make(chan error, 1)
	go scanLines(stdin, lines, scanErr, done)

	sent, answered, failed, badLines := 0, 0, 0, 0
	for lines != nil || answered < sent {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil
				continue
			}
			action, payload, err := parseWSLine(line)
			if err != nil {
				badLines++
				s.printErr("Error: %v", err)
				continue
			}
			if action == "" {
				continue
			}
			sent++
			msg, err := json.Marshal(wsOutgoing{ID: sent, Action: action, Payload: payload})
			if err != nil {
				return fmt.Errorf("encoding the message: %w", err)
			}
			_ = conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
			if err := conn.WriteMessage(websocket.TextMessage, msg); err != nil {
				select { // the reader usually knows why: the router's close frame
				case rerr := <-readErr:
					return s.ended(rerr)
				case <-time.After(wsCloseWait):
					return fmt.Errorf("sending to %s: %w", s.c.base, err)
				}
			}
		case bad := <-replies:
			answered++
			if bad {
				failed++
			}
		case err := <-readErr:
			return s.ended(err)
		case <-ctx.Done():
			s.close(conn, readErr)
			return nil
		}
	}
	s.close(conn, readErr)
	if err := <-scanErr; err != nil {
		return fmt.Errorf("reading standard input: %w", err)
	}
	var problems []string
	if failed > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d turns failed", failed, sent))
	}
	if badLines > 0 {
		problems = append(problems, fmt.Sprintf("%d %s not ACTION [JSON]", badLines, plural(badLines, "line was", "lines were")))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s (see the errors above)", strings.Join(problems, ", "))
	}
	return nil
}

// watch prints a channel's broadcasts until the router ends the session or ctx ends.
func (s *wsSession) watch(ctx context.Context) error {
	conn, err := s.dial(ctx, false)
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintf(s.errw, "Watching channel %q: Ctrl-C to end.\n", s.channel)
	done := make(chan struct{})
	defer close(done)
	readErr := make(chan error, 1)
	go s.read(conn, make(chan bool, 1), readErr, done)
	select {
	case err := <-readErr:
		return s.ended(err)
	case <-ctx.Done():
		s.close(conn, readErr)
		return nil
	}
}

// dial opens the session, explaining a refused handshake.
func (s *wsSession) dial(ctx context.Context, subscribe bool) (*websocket.Conn, error) {
	u := *s.c.base
	u.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	target := u.String() + actorPath(s.function, s.id, "ws")
	if s.channel != "" {
		target = u.String() + "/v1/channels/" + url.PathEscape(s.channel) + "/ws"
	}
	if subscribe {
		target += "?subscribe=1"
	}
	header := http.Header{}
	if s.c.token != "" {
		header.Set("Authorization", "Bearer "+s.c.token)
	}
	d := websocket.Dialer{HandshakeTimeout: wsWriteWait, Proxy: http.ProxyFromEnvironment}
	conn, resp, err := d.DialContext(ctx, target, header)
	if err == nil {
		return conn, nil
	}
	if resp != nil {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
		return nil, s.c.explain(parseAPIError(resp.StatusCode, body), s.function)
	}
	return nil, s.c.connError(ctx, err)
}

// read prints the router's messages and reports each reply, until the connection ends.
func (s *wsSession) read(conn *websocket.Conn, replies chan<- bool, readErr chan<- error, done <-chan struct{}) {
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			readErr <- err
			return
		}
		var m wsIncoming
		if err := json.Unmarshal(data, &m); err != nil {
			s.printErr("Error: the router sent a message that is not JSON: %.200q", data)
			continue
		}
		s.print(data, &m)
		if m.Event != "" {
			continue
		}
		select {
		case replies <- m.Error != nil:
		case <-done:
			return
		}
	}
}

// print prints one message of the router.
func (s *wsSession) print(data []byte, m *wsIncoming) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.format {
	case formatJSON:
		fmt.Fprintf(s.out, "%s\n", data)
		return
	case formatYAML:
		if y, err := yaml.JSONToYAML(data); err == nil {
			fmt.Fprintf(s.out, "---\n%s", y)
			return
		}
	}
	switch {
	case m.Event == "broadcast":
		fmt.Fprintf(s.out, "%s %s %s\n", m.Channel, m.Action, m.Payload)
	case m.Event == "deleted":
		fmt.Fprintf(s.out, "state deleted (version %s)\n", m.Version)
	case m.Event != "":
		fmt.Fprintf(s.out, "state changed (version %s): %s\n", m.Version, valueText(m.State, m.StateB64))
	case m.Error != nil:
		fmt.Fprintf(s.errw, "Error: turn %s failed: %s (%d %s)\n", m.ID, m.Error.Message, m.Error.Status, m.Error.Code)
	default:
		fmt.Fprintf(s.out, "%s\n", valueText(m.Reply, m.ReplyB64))
	}
}

// valueText is a JSON value as it came, or bytes sent as base64 decoded.
func valueText(v json.RawMessage, b64 []byte) []byte {
	if b64 != nil {
		return b64
	}
	return v
}

func (s *wsSession) printErr(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.errw, format+"\n", args...)
}

// close ends the session with a normal close frame and waits briefly for the router's.
func (s *wsSession) close(conn *websocket.Conn, readErr <-chan error) {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	if err := conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(wsWriteWait)); err != nil {
		return
	}
	select {
	case <-readErr:
	case <-time.After(wsCloseWait):
	}
}

// ended explains a session the router ended (or the network broke) before the input did.
func (s *wsSession) ended(err error) error {
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		return fmt.Errorf("the connection to %s broke: %w", s.c.base, err)
	}
	switch ce.Code {
	case websocket.CloseGoingAway:
		return fmt.Errorf("the router ended the session (%s): run the command again to reconnect: %w", ce.Text, err)
	case websocket.ClosePolicyViolation:
		return fmt.Errorf("the router ended the session (%s): read replies faster: %w", ce.Text, err)
	case websocket.CloseMessageTooBig:
		return fmt.Errorf("the router ended the session: a message was over its size limit: %w", err)
	}
	return fmt.Errorf("the router ended the session: %w", err)
}

// scanLines sends stdin's lines to lines and closes it at end of input.
func scanLines(stdin io.Reader, lines chan<- string, scanErr chan<- error, done <-chan struct{}) {
	defer close(lines)
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
	for sc.Scan() {
		select {
		case lines <- sc.Text():
		case <-done:
			scanErr <- nil
			return
		}
	}
	scanErr <- sc.Err()
}

// plural returns one or many by n.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// isTerminal reports whether r is a terminal (an interactive session).
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
