"""The counter actor as a knactor function in Python 3, with the standard library only.

Function "pycounter" has the semantics of examples/counter (the Go one): each actor holds a
count, {"value": <int>}, that starts at 0. Action "add" with payload {"by": <int>} adds to it
and replies {"value": <new total>}; action "get" replies {"value": <total>}. Action "remind"
with {"by": <int>, "in_ms": <int>} is a reminder: it sets the actor's durable timer "reminder",
which runs "add" with {"by": <int>} in_ms milliseconds later (a later "remind" replaces it,
"forget" cancels it); the router keeps the timer with the state, so it fires through restarts
and from zero pods. Counts and
increments are 64-bit signed integers, as in Go: a sum outside that range is refused with
422 "overflow".

It serves the function contract (docs/protocol.md) over HTTP/1.1 with keep-alive:

    POST /v1/invoke   the envelope in, the answer out (Content-Length, never chunked)
    GET  /healthz     200 while serving, 503 once shutting down

Errors use the contract's error form: 400 bad_envelope for a body that is not a valid
envelope, 404 unknown_action, 400 bad_payload for a payload that does not fit the action,
422 bad_state for a stored state that is not a counter's, 413 too_large over 4 MiB.

It listens on 127.0.0.1:$PORT (8080 when PORT is unset); `--host 0.0.0.0` listens on every
interface, as a pod on a cluster must (the router connects to the pod's IP there). On SIGTERM
(or SIGINT) it stops accepting connections, answers /healthz with 503, closes idle keep-alive
connections, lets the invocations in flight finish and exits with status 0. A second signal
kills it at once.

Run it by hand and check it against the contract:

    PORT=8081 python3 examples/pycounter/main.py &
    go run ./test/conformance/cmd/conform -url http://127.0.0.1:8081 -function pycounter \\
        -action 'add={"by":2}' -action get -state '{"value":5}'
"""

import argparse
import base64
import binascii
import json
import os
import re
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The largest envelope accepted, as the Go SDK: the contract's default envelope limit.
MAX_ENVELOPE = 4 << 20
# A keep-alive connection that sends nothing for this long is closed (the Go SDK's idle timeout).
IDLE_TIMEOUT = 120
# The range of a count, as the Go counter's int64.
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

ACTION_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
MAX_ACTOR_BYTES = 1024


class Refusal(Exception):
    """A call refused with the contract's error form: a 4xx status and an error code."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def answer(self):
        """Returns (HTTP status, body) of the error form."""
        return self.status, {"error": {"status": self.status, "code": self.code, "message": self.message}}


def reject_constant(name):
    """Refuses NaN and Infinity, which Python's json accepts but JSON (RFC 8259) does not."""
    raise ValueError(f"{name} is not JSON")


def parse_envelope(body):
    """Decodes and validates an invocation body; raises Refusal(400, bad_envelope) if it is not one."""
    try:
        env = json.loads(body.decode("utf-8"), parse_constant=reject_constant)
    except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Refusal(400, "bad_envelope", f"decode envelope: {e}") from None
    if not isinstance(env, dict):
        raise Refusal(400, "bad_envelope", "the envelope must be a JSON object")

    def field(name, kind, default):
        value = env.get(name)
        if value is None:  # null means the same as absent
            return default
        if not isinstance(value, kind):
            raise Refusal(400, "bad_envelope", f"envelope field {name!r} has the wrong type")
        return value

    actor = field("actor", str, "")
    action = field("action", str, "")
    field("function", str, "")
    field("version", str, "")
    metadata = field("metadata", dict, {})
    if not all(isinstance(v, str) for v in metadata.values()):
        raise Refusal(400, "bad_envelope", "metadata values must be strings")
    try:
        actor_bytes = len(actor.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800"
        actor_bytes = 0
    if not 1 <= actor_bytes <= MAX_ACTOR_BYTES:
        raise Refusal(400, "bad_envelope", f"actor id must be 1 to {MAX_ACTOR_BYTES} bytes of UTF-8, got {actor!r}")
    if not ACTION_RE.fullmatch(action):
        raise Refusal(400, "bad_envelope", f"invalid action name {action!r}")
    for name in ("state", "payload"):
        b64 = field(name + "_b64", str, None)
        if b64 is None:
            continue
        try:
            base64.b64decode(b64, validate=True)
        except binascii.Error as e:
            raise Refusal(400, "bad_envelope", f"{name}_b64 is not standard base64: {e}") from None
        if env.get(name) is not None:
            raise Refusal(400, "bad_envelope", f"both {name} and {name}_b64 are set")
    return env


def is_int64(v):
    """Reports whether v is a JSON integer that fits in 64 bits (bool is not an integer here)."""
    return isinstance(v, int) and not isinstance(v, bool) and INT64_MIN <= v <= INT64_MAX


def load_value(env):
    """Returns the stored count: 0 for a new actor; raises Refusal(422, bad_state) for a state
    that is not a counter's."""
    if env.get("state_b64") is not None:
        raise Refusal(422, "bad_state", "the counter's state is JSON, not bytes")
    state = env.get("state")
    if state is None:
        return 0
    if not isinstance(state, dict):
        raise Refusal(422, "bad_state", 'the counter\'s state is an object {"value": <int>}')
    value = state.get("value")
    if value is None:
        return 0
    if not is_int64(value):
        raise Refusal(422, "bad_state", f"the stored value {value!r} is not a 64-bit integer")
    return value


def payload_object(env, action):
    """Returns the payload as a dict ({} for none); raises Refusal(400, bad_payload) otherwise."""
    if env.get("payload_b64") is not None:
        raise Refusal(400, "bad_payload", f"payload of action {action!r} must be JSON, not bytes")
    payload = env.get("payload")
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise Refusal(400, "bad_payload", f"payload of action {action!r} must be a JSON object")
    return payload


def add(value, env):
    """Action add: adds the payload's "by" to the count."""
    by = payload_object(env, "add").get("by")
    if by is None:
        by = 0
    if not is_int64(by):
        raise Refusal(400, "bad_payload", 'payload of action "add" must be {"by": <64-bit integer>}')
    total = value + by
    if not INT64_MIN <= total <= INT64_MAX:
        raise Refusal(422, "overflow", f"adding {by} to {value} overflows a 64-bit integer")
    answer = {"reply": {"value": total}}
    if total != value:  # as the Go SDK: send the state only when it changed
        answer = {"state": {"value": total}, **answer}
    return answer


def get(value, env):
    """Action get: replies the count."""
    payload_object(env, "get")
    return {"reply": {"value": value}}


# The longest a reminder may wait: the contract's limit on a timer's delay (366 days).
MAX_REMIND_MS = 366 * 24 * 3600 * 1000


def remind(value, env):
    """Action remind: sets the timer "reminder" to add "by" to the count in "in_ms" ms."""
    payload = payload_object(env, "remind")
    by, in_ms = payload.get("by", 1), payload.get("in_ms")
    if not is_int64(by) or not isinstance(in_ms, int) or isinstance(in_ms, bool) or not 0 <= in_ms <= MAX_REMIND_MS:
        raise Refusal(400, "bad_payload", f'payload of action "remind" must be {{"by": <int>, "in_ms": 0..{MAX_REMIND_MS}}}')
    timer = {"name": "reminder", "action": "add", "payload": {"by": by}, "in_ms": in_ms}
    return {"reply": {"value": value, "reminder_in_ms": in_ms}, "timers": [timer]}


def forget(value, env):
    """Action forget: cancels the reminder, if one is set."""
    payload_object(env, "forget")
    return {"reply": {"value": value}, "timers": [{"name": "reminder", "cancel": True}]}


ACTIONS = {"add": add, "get": get, "remind": remind, "forget": forget}


def invoke(body):
    """Runs one turn from the raw envelope: returns (HTTP status, answer). Deterministic, no
    side effects, as the contract requires (the router re-runs turns)."""
    try:
        env = parse_envelope(body)
        act = ACTIONS.get(env["action"])
        if act is None:
            raise Refusal(404, "unknown_action", f"unknown action {json.dumps(env['action'])}")
        return 200, act(load_value(env), env)
    except Refusal as r:
        return r.answer()


class Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer that shuts down gracefully: see drain."""

    daemon_threads = False  # server_close joins the connection threads, so in-flight calls finish

    def __init__(self, address):
        super().__init__(address, Handler)
        self.lock = threading.Lock()  # guards draining and handlers
        self.draining = False
        self.handlers = set()  # the Handler of every open connection

    def drain(self):
        """Stops serving: /healthz answers 503 from now on, the accept loop ends, idle
        connections are closed, and busy ones close after their answer. Call it from a thread
        other than serve_forever's; it returns once the accept loop has ended."""
        with self.lock:
            self.draining = True
        self.shutdown()  # waits for serve_forever to return: no new connections
        with self.lock:
            for h in self.handlers:
                if h.idle:
                    h.closed_idle = True
                    try:
                        h.connection.shutdown(socket.SHUT_RDWR)  # wakes its blocked read with EOF
                    except OSError:
                        pass


class Handler(BaseHTTPRequestHandler):
    """Serves one connection: keep-alive HTTP/1.1, each answer with a Content-Length."""

    protocol_version = "HTTP/1.1"
    server_version = "pycounter"
    timeout = IDLE_TIMEOUT
    disable_nagle_algorithm = True  # headers and body are two writes: don't wait for an ACK between

    def setup(self):
        super().setup()
        self.idle = False  # waiting for the next request line; guarded by server.lock
        self.closed_idle = False  # drain closed the connection while it was idle
        with self.server.lock:
            self.server.handlers.add(self)

    def finish(self):
        with self.server.lock:
            self.server.handlers.discard(self)
        super().finish()

    def handle_one_request(self):
        with self.server.lock:
            if self.server.draining:  # accepted as the server stopped: close it unused
                self.close_connection = True
                return
            self.idle = True
        super().handle_one_request()
        with self.server.lock:
            self.idle = False
            if self.server.draining:
                self.close_connection = True

    def parse_request(self):
        # Called once a request line has arrived: the connection is busy until its answer is out.
        with self.server.lock:
            self.idle = False
            if self.closed_idle:  # drain shut the socket as the request arrived: it cannot be answered
                self.close_connection = True
                return False
        return super().parse_request()

    def do_GET(self):
        if self.path == "/v1/invoke":
            return self.method_not_allowed()
        if self.path != "/healthz":
            return self.answer(*Refusal(404, "not_found", f"no such path {self.path!r}").answer())
        with self.server.lock:
            draining = self.server.draining
        if draining:
            self.answer(503, {"status": "shutting down"})
        else:
            self.answer(200, {"status": "ok"})

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        if self.path != "/v1/invoke":
            return self.answer(*Refusal(404, "not_found", f"no such path {self.path!r}").answer())
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # the body was not read
            return self.answer(*Refusal(400, "bad_envelope", "send the envelope with a Content-Length, not chunked").answer())
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.close_connection = True
            return self.answer(*Refusal(400, "bad_envelope", "invalid Content-Length").answer())
        if length > MAX_ENVELOPE:
            self.close_connection = True  # the body was not read
            return self.answer(*Refusal(413, "too_large", f"envelope exceeds {MAX_ENVELOPE} bytes").answer())
        try:
            body = self.rfile.read(length)
        except OSError:  # the caller went away or stalled past the timeout
            self.close_connection = True
            return
        if len(body) < length:
            self.close_connection = True
            return
        self.answer(*invoke(body))

    def do_PUT(self):
        self.method_not_allowed()

    do_DELETE = do_PATCH = do_OPTIONS = do_PUT

    def method_not_allowed(self):
        """Answers 405 in the error form."""
        self.answer(*Refusal(405, "method_not_allowed", f"{self.command} {self.path}: use POST /v1/invoke or GET /healthz").answer())

    def answer(self, status, body):
        data = json.dumps(body, separators=(",", ":")).encode("ascii")
        with self.server.lock:
            if self.server.draining:
                self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_request(self, code="-", size="-"):
        pass  # one line per turn is noise in a pod's log; errors are still logged


def main():
    parser = argparse.ArgumentParser(description="The counter actor as a knactor function.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    args = parser.parse_args()
    port = int(os.environ.get("PORT") or "8080")
    server = Server((args.host, port))

    def stop(signum, _frame):
        # Runs on the main thread, inside serve_forever: drain from another thread. A second
        # signal gets the default action, which ends the process at once.
        signal.signal(signum, signal.SIG_DFL)
        threading.Thread(target=server.drain, name="drain").start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"pycounter: serving on {args.host}:{server.server_address[1]}", file=sys.stderr, flush=True)
    server.serve_forever()
    server.server_close()  # joins the connection threads: the invocations in flight finish
    print("pycounter: stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
