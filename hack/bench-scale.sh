#!/usr/bin/env bash
# Draws knactor's scaling timeline (issue 14, point 3): runs `knactor up` with the counter
# example at zero pods, sends a load step (PHASES, default 1 caller for 15 s, 50 for 30 s, then
# none) and waits for the function to scale back to zero, then draws calls/s, callers, ready and
# desired pods, and p50/p99 latency over time into docs/scaling-timeline.png (and the samples into
# docs/scaling-timeline.csv), and prints the numbers as Markdown for docs/benchmarks.md.
#
# The counter's autoscaling: target 5 concurrent calls per pod, at most 10 pods, a 20 s stable
# window (2 s panic window), scale-to-zero grace 2 s: Knative's KPA, with windows short enough
# for a run of about two minutes. hack/benchscale is a module of its own, so its plotting
# library (gonum.org/v1/plot) is not a dependency of knactor.
#
#   hack/bench-scale.sh                       # writes docs/scaling-timeline.{png,csv}
#   PHASES=10s:1,20s:100,0s:0 OUT=/tmp/t.png hack/bench-scale.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
PHASES="${PHASES:-15s:1,30s:50,0s:0}"
OUT="${OUT:-${root}/docs/scaling-timeline.png}"
CSV="${CSV:-${OUT%.png}.csv}"
work="$(mktemp -d)"
trap 'kill "${up_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/knactor" ./cmd/knactor
go build -o "$work/counter" ./examples/counter
(cd hack/benchscale && go build -o "$work/benchscale" .)

cat > "$work/counter.yaml" <<YAML
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: counter
spec:
  template:
    metadata:
      annotations:
        knactor.dev/command: "$work/counter"
        autoscaling.knative.dev/initial-scale: "0"
        autoscaling.knative.dev/target: "5"
        autoscaling.knative.dev/target-utilization-percentage: "100"
        autoscaling.knative.dev/window: "20s"
        autoscaling.knative.dev/max-scale: "10"
    spec:
      containers:
        - image: example.com/counter
YAML

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$work/knactor" up -f "$work/counter.yaml" --listen "127.0.0.1:$port" --state-dir "$work/state" \
  --log-dir "$work/logs" --allow-zero-initial-scale --scale-to-zero-grace 2s > "$work/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break
  sleep 0.1
done

echo "machine: $(nproc) cores, $(uname -sr); load step $PHASES" >&2
"$work/benchscale" -url "http://127.0.0.1:$port" -phases "$PHASES" -png "$OUT" -csv "$CSV"
echo "wrote $OUT and $CSV" >&2
