#!/usr/bin/env bash
# Benchmarks knactor's router against its baselines in one run (issue 3, point 11), with wrk
# POSTing a small JSON body over kept-alive connections on loopback:
#
#   (a)  the hello function directly            POST http://127.0.0.1:$HELLO/hello
#   (a') the counter function directly          POST http://127.0.0.1:$COUNTER/v1/invoke with the
#        envelope of one cache-hit call: the function's own share of a stateful call
#   (b)  nginx reverse proxy -> hello           upstream keepalive 64, access_log off
#   (b2) bare fasthttp reverse proxy -> hello   hack/baseproxy: the router's own fasthttp server
#        and client settings and nothing else, the floor of (c) on this machine; (c) ÷ (b2) is
#        printed below the table: what knactor's own work costs on top of the stack
#   (c)  router pass-through -> hello           POST /v1/functions/hello/hello
#   (d)  router stateful calls, write-behind    POST /v1/actors/counter/<id>/add {"by":1} over
#        ACTORS actors, all warm in the cache, state flushed to a local directory
#   (d') the same with no flush during the run (--flush-interval 1h): the call path alone, without
#        the store writes that (d) pays for in the background (1000 actors rewritten every second)
#   (d'k) (d') with an Idempotency-Key of its own on every call: each call is a write of the actor's
#        state and its remembered keys (up to 128 per actor), however read-only; the key's cost is
#        printed as the ratio (d'k) ÷ (d') below the table
#   (e)  router stateful calls, write-through   the same calls; every turn's new state is a
#        conditional PUT to a real MinIO before the reply leaves
#   (f)  router stateful calls, write-through to the local store (knactor's default): every turn's
#        new state is in the store's fsynced log before the reply leaves; the turns of all actors
#        in flight share fsyncs, and the fsyncs per call are printed below the table
#
# (d) and (f) use the local store (an embedded Pebble database in a temp dir, on the disk of
# TMPDIR). The disk's own fsync latency, measured with dd (1000 synced 100-byte writes), is
# printed beside the 1-connection p50s: the floor of a durable write with nobody to share with.
#
# Each target is measured at every connection count in CONNS after an uncounted warm-up, and the
# script prints a Markdown table: req/s, p50, p99, and req/s as a ratio to (a) and to (b) at the
# same connection count. Numbers vary ±10-15 % between runs of the same build, so compare ratios
# within one run, not absolute numbers across runs (shared/notes/anchors.md). (c), (d), (d') and
# (e) each get a router process of their own, started just before and stopped right after, so
# one cannot disturb (or crash) another; MinIO runs only during (e).
#
# Each target with a proxy also gets the proxy's system calls per request, counted by strace in
# one more run of SYSCALL_RUN at 8 connections after the measured ones (the same on every row of
# the target): reads (read, readv, recvfrom, recvmsg, including those that come back EAGAIN before
# the poller parks), writes (write, writev, sendto, sendmsg) and all calls (epoll waits, futex
# wake-ups, ...). A proxied request needs at least one read and one write on each of its two
# connections; what is above that is the proxy's overhead.
#
# Beside latency and throughput, each row says how much CPU the proxy (nginx or the router), the
# function and MinIO spent per request (utime+stime from /proc, nginx's workers included), which
# is what a router costs independently of how the cores were shared, and how much of the
# machine's CPU went elsewhere during the run: to processes outside the benchmark (kernel threads
# included, such as those doing MinIO's disk writes) or, on a VM, to other machines (steal).
# Another build or test run on the machine, or a busy host, makes every number low and noisy, so
# rows over 10 % are flagged.
#
# A benchmark of errors is worthless, so results are checked: non-2xx answers and socket errors
# that wrk reports, a server that died during a run (its row says CRASHED and the start of its
# log is shown), and after (d), (d') and (e) the counters of all actors must add up to the calls that
# were answered. Any of these is flagged loudly and makes the script exit 1 after the table.
#
# Environment:
#   DURATION    length of each measured run (default 10s)
#   WARMUP      length of the uncounted run before each target (default 2s; 0 skips it)
#   CONNS       connection counts to measure (default "64 8 1")
#   ONLY        measure only these targets, e.g. ONLY="d1 f" (ids: a a1 b b2 c d d1 d1k e f)
#   THREADS     wrk threads (default 2, or 1 with PIN=1)
#   ACTORS      actors the stateful calls spread over (default 1000)
#   PIN=1       run wrk on CPU 1 and every server on CPU 0 (taskset), so they do not share
#               cores; the Go servers then run with GOMAXPROCS=1
#   MINIO=0     skip (e) and MinIO (no MinIO build on a fresh machine)
#   SYSCALL_RUN length of the strace-counted run of each proxied target (default 3s; 0 skips it)
#   ROUTER_BIN  a knactor binary to benchmark instead of building ./cmd/knactor (to compare builds)
#   OUT=file    also write the table to this file
#
# Needs: Go, wrk, nginx and curl (installed with apt-get when missing, which needs root or sudo),
# and MinIO through hack/install-minio.sh (built into bin/ the first time, which takes minutes).
# Everything listens on 127.0.0.1 on free ports (the counter, through sdk.Main, binds all
# interfaces as the function contract allows); every process this script starts is stopped by
# its PID when it exits, and its temp dir is removed. Takes about 3 minutes at DURATION=10s.
#
# Usage: hack/bench-router.sh            DURATION=30s PIN=1 hack/bench-router.sh     ONLY="d1 f" hack/bench-router.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
SYSCALL_RUN="${SYSCALL_RUN:-3s}"
CONNS="${CONNS:-64 8 1}"
ONLY="${ONLY:-}"
PIN="${PIN:-0}"
ACTORS="${ACTORS:-1000}"
MINIO="${MINIO:-1}"
ROUTER_BIN="${ROUTER_BIN:-}"
OUT="${OUT:-}"
if [[ "${PIN}" == 1 ]]; then
  THREADS="${THREADS:-1}"
else
  THREADS="${THREADS:-2}"
fi

log() { printf '[bench-router %4ds] %s\n' "${SECONDS}" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Temp dir, processes and cleanup
# ---------------------------------------------------------------------------------------------

tmp="$(mktemp -d "${TMPDIR:-/tmp}/knactor-bench.XXXXXX")"
mkdir -p "${tmp}/bin" "${tmp}/logs" "${tmp}/wrk" "${tmp}/nginx" "${tmp}/minio"
declare -A PID  # name → PID of every running process this script started

# stop NAME stops the named process: SIGTERM, then SIGKILL if it is still there after 10 s.
stop() {
  local name="$1" pid="${PID[$1]:-}"
  [[ -n "${pid}" ]] || return 0
  unset "PID[${name}]"
  kill -TERM "${pid}" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "${pid}" 2>/dev/null; then
    log "${name} (pid ${pid}) ignored SIGTERM for 10 s: killing it"
    kill -KILL "${pid}" 2>/dev/null || true
  fi
  wait "${pid}" 2>/dev/null || true
}

# show_log NAME prints the start of a panic in logs/NAME.log if there is one, else its last lines.
show_log() {
  local f="${tmp}/logs/$1.log"
  [[ -s "${f}" ]] || return 0
  if grep -qE '^(panic|fatal error):' "${f}"; then
    log "$1 crashed; the start of its panic:"
    grep -m1 -A 24 -E '^(panic|fatal error):' "${f}" | sed 's/^/    /' >&2
  else
    log "last lines of $1's log:"
    tail -n 15 "${f}" | sed 's/^/    /' >&2
  fi
}

# cleanup stops every process still running, shows the logs of a failed run and removes the
# temp dir.
cleanup() {
  local rc=$? name
  trap - EXIT INT TERM
  for name in "${!PID[@]}"; do
    kill -TERM "${PID[${name}]}" 2>/dev/null || true # all at once: they stop in parallel
  done
  for name in "${!PID[@]}"; do
    stop "${name}"
  done
  if [[ "${rc}" != 0 ]]; then
    for f in "${tmp}"/logs/*.log; do
      [[ -e "${f}" ]] && show_log "$(basename "${f}" .log)"
    done
    [[ -s "${tmp}/nginx/error.log" ]] && tail -n 5 "${tmp}/nginx/error.log" >&2
  fi
  rm -rf "${tmp}"
  exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# pin runs a server on CPU 0 when PIN=1 (taskset execs the command, so the PID stays the same).
pin=()
if [[ "${PIN}" == 1 ]]; then
  pin=(taskset -c 0)
fi

# start NAME CMD... runs CMD in the background with its output in logs/NAME.log and records its
# PID in PID[NAME].
start() {
  local name="$1"
  shift
  "${pin[@]}" "$@" >"${tmp}/logs/${name}.log" 2>&1 &
  PID[${name}]=$!
}

# alive NAME... reports whether every named process still runs.
alive() {
  local name
  for name in "$@"; do
    kill -0 "${PID[${name}]:-0}" 2>/dev/null || return 1
  done
}

# used_ports holds the ports handed out so far, so two servers never get the same one.
used_ports=" "

# free_port VAR sets VAR to a TCP port on 127.0.0.1 that nothing listens on now. Ports come from
# below Linux's ephemeral range (32768+), so outgoing connections cannot take them meanwhile.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 12000))
    [[ "${used_ports}" == *" ${p} "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/${p}") 2>/dev/null; then
      used_ports+="${p} "
      printf -v "$1" '%s' "${p}"
      return
    fi
  done
}

# wait_http NAME URL waits up to 30 s for URL to answer 2xx, failing if process NAME exits.
wait_http() {
  local name="$1" url="$2"
  for _ in $(seq 300); do
    if curl -fsS -o /dev/null --max-time 1 "${url}" 2>/dev/null; then
      return
    fi
    alive "${name}" || die "${name} exited before it was ready (see its log below)"
    sleep 0.1
  done
  die "${name} not ready at ${url} after 30 s"
}

# ---------------------------------------------------------------------------------------------
# Tools and binaries
# ---------------------------------------------------------------------------------------------

# Debian puts nginx in /usr/sbin, which a non-root PATH may lack.
nginx_bin="$(command -v nginx || true)"
[[ -z "${nginx_bin}" && -x /usr/sbin/nginx ]] && nginx_bin=/usr/sbin/nginx
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v strace >/dev/null || missing+=(strace)
[[ -n "${nginx_bin}" ]] || missing+=(nginx-light)
if ((${#missing[@]})); then
  log "installing ${missing[*]} with apt-get (not installed)"
  sudo=()
  [[ "$(id -u)" == 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq >&2
  if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >&2; then
    # Some Debian releases ship nginx-light only as a transitional name; plain nginx will do.
    missing=("${missing[@]/nginx-light/nginx}")
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >&2
  fi
  nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
fi
[[ "${PIN}" != 1 ]] || command -v taskset >/dev/null || die "PIN=1 needs taskset (util-linux)"

minio_bin=""
if [[ "${MINIO}" == 1 && ( -z "${ONLY}" || " ${ONLY} " == *" e "* ) ]]; then
  log "getting MinIO through hack/install-minio.sh (built on first use: minutes)"
  minio_bin="$(hack/install-minio.sh)"
fi

if [[ -n "${ROUTER_BIN}" ]]; then
  [[ -x "${ROUTER_BIN}" ]] || die "ROUTER_BIN=${ROUTER_BIN} is not an executable"
  log "building counter and hello into ${tmp}/bin; knactor is ${ROUTER_BIN}"
  cp "${ROUTER_BIN}" "${tmp}/bin/knactor"
else
  log "building knactor, counter and hello into ${tmp}/bin"
  go build -o "${tmp}/bin/knactor" ./cmd/knactor
fi
go build -o "${tmp}/bin/counter" ./examples/counter
go build -o "${tmp}/bin/baseproxy" ./hack/baseproxy
go build -o "${tmp}/bin/hello" ./examples/hello

# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------

free_port HELLO
free_port COUNTER
free_port NGINX

# The functions read $PORT; hello binds $HOST:$PORT.
HOST=127.0.0.1 PORT="${HELLO}" start hello "${tmp}/bin/hello"
wait_http hello "http://127.0.0.1:${HELLO}/healthz"
PORT="${COUNTER}" start counter "${tmp}/bin/counter"
wait_http counter "http://127.0.0.1:${COUNTER}/healthz"

# nginx as a tuned reverse proxy: kept-alive upstream connections (HTTP/1.1, no Connection
# header), no access log, everything (pid, logs, temp files) in the temp dir. Workers: one per
# core, as the router's GOMAXPROCS.
cat >"${tmp}/nginx/nginx.conf" <<EOF
worker_processes auto;
error_log ${tmp}/nginx/error.log warn;
pid ${tmp}/nginx/nginx.pid;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path ${tmp}/nginx/client_body;
    proxy_temp_path ${tmp}/nginx/proxy;
    fastcgi_temp_path ${tmp}/nginx/fastcgi;
    uwsgi_temp_path ${tmp}/nginx/uwsgi;
    scgi_temp_path ${tmp}/nginx/scgi;
    keepalive_requests 1000000;
    upstream hello {
        server 127.0.0.1:${HELLO};
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:${NGINX};
        location / {
            proxy_pass http://hello;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
start nginx "${nginx_bin}" -c "${tmp}/nginx/nginx.conf" -p "${tmp}/nginx" -g 'daemon off;'
wait_http nginx "http://127.0.0.1:${NGINX}/hello"

functions=(--function "hello=127.0.0.1:${HELLO}" --function "counter=127.0.0.1:${COUNTER}")

# start_router NAME PORT ARGS... starts a knactor router on 127.0.0.1:PORT in front of hello and
# the counter and waits until it is ready.
start_router() {
  local name="$1" port="$2"
  shift 2
  start "${name}" "${tmp}/bin/knactor" router --listen "127.0.0.1:${port}" "${functions[@]}" "$@"
  wait_http "${name}" "http://127.0.0.1:${port}/readyz"
}

# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------

declare -A RPS P50 P99 ERRS  # "target,conns" → results of one run
declare -A CPU OTHER         # "target,conns" → CPU µs per request; % of the CPU used elsewhere
declare -A TITLE             # target → its name in the table
declare -A ANSWERED          # target → requests answered in all its wrk runs (warm-up included)
declare -A BROKEN            # target → why its numbers are invalid (a crash)
declare -A SYNCS             # "target,conns" → fsyncs of the local store's log per answered call
declare -A SYSCALLS          # target → the proxy's system calls per request (count_syscalls)
SYNCS_URL=""                 # the /metrics of the router whose store fsyncs are counted, if any
targets=()                   # in the order measured
failures=0

# fail MESSAGE counts a failed run or check and says so loudly.
fail() {
  failures=$((failures + 1))
  log "!!!!!!!! $* !!!!!!!!"
}

# to_us VALUE converts one of wrk's durations (12.3us, 4.5ms, 1.2s, 3m) to microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    f = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1e6 : (u == "m") ? 6e7 : -1
    if (v == "" || f < 0) { print "?"; exit } printf "%.0f", n * f }'
}

# fmt_us US prints a latency in µs below a millisecond, else in ms.
fmt_us() {
  awk -v u="$1" 'BEGIN { if (u == "?" || u == "") print "?"; else if (u < 1000) printf "%d µs", u; else printf "%.2f ms", u / 1000 }'
}

clk_tck="$(getconf CLK_TCK)"

# proc_ticks PID prints the CPU time (utime+stime, in clock ticks) of process PID and of its live
# children (nginx's workers). The command name in /proc/PID/stat is cut off first, as it may
# hold spaces; utime and stime are then fields 12 and 13.
proc_ticks() {
  local pid="$1" t=0 c
  for c in "${pid}" $(cat /proc/"${pid}"/task/*/children 2>/dev/null); do
    t=$((t + $(sed 's/.*) //' /proc/"${c}"/stat 2>/dev/null | awk '{print $12 + $13}' || echo 0)))
  done
  echo "${t}"
}

# count_syscalls LABEL URL SCRIPT PROXY runs wrk for SYSCALL_RUN at 8 connections with strace
# counting the system calls of the proxy process PROXY and its children (nginx's workers; the
# router's threads), and sets SYSCALLS[LABEL] to "reads · writes · all" per answered request
# (run_answered is that run's, as after wrk_run): reads are read,
# readv, recvfrom and recvmsg, writes are write, writev, sendto and sendmsg, all is every call
# (epoll waits, futexes, accepts, ...). strace slows the proxy, so this run is apart from the
# measured ones and only its counts are kept; they do not depend on the speed.
count_syscalls() {
  local label="$1" url="$2" script="$3" proxy="$4" pid c pids=()
  local out="${tmp}/strace-${label}.txt"
  pid="${PID[${proxy}]}"
  for c in "${pid}" $(cat /proc/"${pid}"/task/*/children 2>/dev/null); do pids+=(-p "${c}"); done
  strace -f -c -qq -o "${out}" "${pids[@]}" 2>/dev/null &
  local strace_pid=$!
  sleep 0.5 # attached
  wrk_run "${label}-strace" 8 "${SYSCALL_RUN}" "${url}" "${script}" || true
  kill -INT "${strace_pid}" 2>/dev/null || true
  wait "${strace_pid}" 2>/dev/null || true
  SYSCALLS[${label}]="$(awk -v n="${run_answered}" '
    # strace -c: % time, seconds, usecs/call, calls, [errors], syscall
    $NF ~ /^(read|readv|recvfrom|recvmsg)$/ { r += $4 }
    $NF ~ /^(write|writev|sendto|sendmsg)$/ { w += $4 }
    $NF == "total" { t = $4 }
    END { if (n > 0 && t > 0) printf "%.2f · %.2f · %.1f", r / n, w / n, t / n; else print "n/a" }' "${out}")"
}

# busy_ticks prints the CPU time all CPUs spent in user and system mode since boot, plus the time
# the hypervisor gave them to other machines (steal), in ticks.
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $9}' /proc/stat; }

# shell_ticks prints the CPU time of this shell's waited-for children (wrk, curl, awk), in ticks.
shell_ticks() { sed 's/.*) //' /proc/$$/stat | awk '{print $14 + $15}'; }

declare -A T0  # "name" → CPU ticks of each started process at the start of a run; "@busy", "@shell"

# cpu_mark records the CPU times cpu_since measures from.
cpu_mark() {
  local name
  T0=()
  for name in "${!PID[@]}"; do
    T0[${name}]="$(proc_ticks "${PID[${name}]}")"
  done
  T0[@busy]="$(busy_ticks)"
  T0[@shell]="$(shell_ticks)"
}

# cpu_since NAME prints the ticks process NAME used since cpu_mark (0 if it was not running).
cpu_since() {
  local pid="${PID[$1]:-}"
  [[ -n "${pid}" && -n "${T0[$1]:-}" ]] || { echo 0; return; }
  echo $(($(proc_ticks "${pid}") - ${T0[$1]}))
}

# cpu_other prints the share of the machine's CPU (in %) that went since cpu_mark to processes
# this script did not start, or to other machines (steal): all busy time less that of our
# servers, wrk and the shell's tools.
cpu_other() {
  local secs="$1" ours name
  ours=$(($(shell_ticks) - ${T0[@shell]}))
  for name in "${!PID[@]}"; do
    ours=$((ours + $(cpu_since "${name}")))
  done
  awk -v busy=$(($(busy_ticks) - ${T0[@busy]})) -v ours="${ours}" -v hz="${clk_tck}" -v n="$(nproc)" -v s="${secs}" \
    'BEGIN { o = (busy - ours) / hz / (n * s) * 100; if (o < 0) o = 0; printf "%.0f", o }'
}

# us_per_req TICKS REQUESTS prints CPU microseconds per request.
us_per_req() {
  awk -v t="$1" -v n="$2" -v hz="${clk_tck}" 'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print "?" }'
}

# wrk_run LABEL CONNS DURATION URL SCRIPT runs wrk with its output in wrk/LABEL.txt. It sets
# run_answered to the requests answered and run_errors to the non-2xx answers plus socket errors,
# and fails (status 1) when wrk itself failed, e.g. could not connect at all.
wrk_run() {
  local label="$1" conns="$2" dur="$3" url="$4" script="$5" threads="${THREADS}"
  local f="${tmp}/wrk/${label}.txt" non2xx sock
  ((threads <= conns)) || threads="${conns}"
  local cmd=(wrk -t"${threads}" -c"${conns}" -d"${dur}" --latency -s "${script}" "${url}")
  [[ "${PIN}" != 1 ]] || cmd=(taskset -c 1 "${cmd[@]}")
  run_answered=0
  run_errors=0
  if ! ACTORS="${ACTORS}" "${cmd[@]}" >"${f}" 2>&1; then
    fail "${label}: wrk failed: $(head -c 300 "${f}")"
    return 1
  fi
  run_answered="$(awk '/ requests in / {print $1; exit}' "${f}")"
  non2xx="$(awk -F: '/Non-2xx or 3xx responses/ {gsub(/ /, "", $2); print $2}' "${f}")"
  # "Socket errors: connect 0, read 0, write 0, timeout 0": the sum of the four.
  sock="$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "${f}")"
  run_errors=$((${non2xx:-0} + ${sock:-0}))
  if ((run_errors > 0)); then
    fail "${label}: ${non2xx:-0} non-2xx answers and ${sock:-0} socket errors beside ${run_answered} answered requests: this run measured errors"
    sed 's/^/    /' "${f}" >&2
  fi
}

# measure ID TITLE URL SCRIPT PROXY FUNCTION [STORE] warms the target up, then measures it at each
# connection count. ID is a plain word (a, a1, b, ...), TITLE the row's name in the table; PROXY
# ("-" for none), FUNCTION and STORE name the processes that serve the target, whose CPU per
# request is reported: a run during which one of them died invalidates the target.
measure() {
  local id="$1" title="$2" url="$3" script="$4" proxy="$5" fn="$6" store="${7:-}" c name cpu secs t0 conns
  shift 4
  [[ "${1}" != - ]] || shift
  targets+=("${id}")
  TITLE[${id}]="${title}"
  ANSWERED[${id}]=0
  local runs=()
  [[ "${WARMUP}" == 0 || "${WARMUP}" == 0s ]] || runs+=(warmup)
  read -r -a conns <<<"${CONNS}"
  runs+=("${conns[@]}")
  for c in "${runs[@]}"; do
    if [[ "${c}" == warmup ]]; then
      log "${title}: warm-up, ${WARMUP} at 64 connections"
      wrk_run "${id}-warmup" 64 "${WARMUP}" "${url}" "${script}" || true
    else
      log "${title}: ${DURATION} at ${c} connections"
      cpu_mark
      local syncs0=""
      [[ -z "${SYNCS_URL}" ]] || syncs0="$(log_syncs)"
      t0="$(date +%s.%N)"
      wrk_run "${id}-${c}" "${c}" "${DURATION}" "${url}" "${script}" || true
      if [[ -n "${syncs0}" ]]; then
        SYNCS["${id},${c}"]="$(awk -v a="${syncs0}" -v b="$(log_syncs)" -v n="${run_answered}" 'BEGIN { if (n > 0) printf "%.3f", (b - a) / n; else print "?" }')"
      fi
      secs="$(awk -v a="${t0}" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"
      cpu=""
      [[ "${proxy}" == - ]] || cpu="$(us_per_req "$(cpu_since "${proxy}")" "${run_answered}") · "
      cpu+="$(us_per_req "$(cpu_since "${fn}")" "${run_answered}")"
      [[ -z "${store}" ]] || cpu+=" · ${store} $(us_per_req "$(cpu_since "${store}")" "${run_answered}")"
      CPU["${id},${c}"]="${cpu}"
      OTHER["${id},${c}"]="$(cpu_other "${secs}")"
      if ((${OTHER["${id},${c}"]} > 10)); then
        log "WARNING: ${OTHER["${id},${c}"]}% of the machine's CPU went to processes outside this benchmark, kernel threads (its disk I/O too) or hypervisor steal during this run: if that was other work, the numbers are low and noisy"
      fi
      local f="${tmp}/wrk/${id}-${c}.txt"
      RPS["${id},${c}"]="$(awk '/^Requests\/sec:/ {print $2}' "${f}")"
      P50["${id},${c}"]="$(to_us "$(awk '$1 == "50%" {print $2}' "${f}")")"
      P99["${id},${c}"]="$(to_us "$(awk '$1 == "99%" {print $2}' "${f}")")"
      ERRS["${id},${c}"]="${run_errors}"
    fi
    ANSWERED[${id}]=$((${ANSWERED[${id}]} + run_answered))
    for name in "$@"; do
      if ! alive "${name}"; then
        BROKEN[${id}]="${name} CRASHED"
        fail "${title}: ${name} died during the run"
        show_log "${name}"
        return 1
      fi
    done
  done
  if [[ "${proxy}" != - && "${SYSCALL_RUN}" != 0 ]]; then
    log "${title}: counting the proxy's system calls (strace, ${SYSCALL_RUN} at 8 connections)"
    count_syscalls "${id}" "${url}" "${script}" "${proxy}"
    ANSWERED[${id}]=$((${ANSWERED[${id}]} + run_answered))
  fi
}

# log_syncs prints the local store's log fsyncs so far, from the router at SYNCS_URL.
log_syncs() {
  curl -fsS --max-time 5 "${SYNCS_URL}/metrics" | awk '$1 == "knactor_store_log_syncs_total" {print $2}'
}

# want ID reports whether target ID is to be measured (ONLY unset, or ID in it).
want() { [[ -z "${ONLY}" || " ${ONLY} " == *" $1 "* ]]; }

# actor_urls BASE SUFFIX writes a curl config with one URL per actor.
actor_urls() {
  local base="$1" i
  for ((i = 0; i < ACTORS; i++)); do
    printf 'url = "%s/v1/actors/counter/bench-%d%s"\n' "${base}" "${i}" "$2"
  done
}

# warm_actors BASE calls "add" once on every actor through the router at BASE, over one kept-alive
# connection, so that every call of the measured runs is a cache hit.
warm_actors() {
  local base="$1" ok
  actor_urls "${base}" /add >"${tmp}/warm.curl"
  ok="$(curl -sS -X POST -H 'Content-Type: application/json' -d '{"by":1}' -w '\n' -K "${tmp}/warm.curl" | grep -c '^{"value":' || true)"
  ((ok == ACTORS)) || die "warming ${ACTORS} actors through ${base}: only ${ok} calls answered a value"
}

# check_counts ID BASE reads every actor's state through the router at BASE and checks that the
# counters add up to the calls made: the warm pass plus every answered wrk request, plus at most
# one call per connection that was in flight when a wrk run stopped (run, but not counted by wrk).
check_counts() {
  local id="$1" base="$2" sum want slack=64 c
  actor_urls "${base}" "" >"${tmp}/check.curl"
  sum="$(curl -sS -w '\n' -K "${tmp}/check.curl" | grep -o '"value":-\?[0-9]*' | awk -F: '{s += $2} END {printf "%d", s}')"
  want=$((ACTORS + ${ANSWERED[${id}]}))
  for c in ${CONNS}; do slack=$((slack + c)); done
  if ((sum < want || sum > want + slack)); then
    fail "${TITLE[${id}]}: state check FAILED: the counters add up to ${sum}, want ${want} answered calls (+ at most ${slack} in flight at wrk's stops)"
  else
    log "${TITLE[${id}]}: state check ok: the counters add up to ${sum} = ${want} answered calls + $((sum - want)) in flight at wrk's stops"
  fi
}

bench="${root}/hack/bench"

! want a || measure a "(a) function directly (net/http)" "http://127.0.0.1:${HELLO}/hello" "${bench}/post.lua" - hello || true
! want a1 || measure a1 "(a') counter function directly (/v1/invoke)" "http://127.0.0.1:${COUNTER}/v1/invoke" "${bench}/invoke.lua" - counter || true
! want b || measure b "(b) nginx reverse proxy → function" "http://127.0.0.1:${NGINX}/hello" "${bench}/post.lua" nginx hello || true

if want b2; then
free_port BASEPROXY
start baseproxy "${tmp}/bin/baseproxy" -listen "127.0.0.1:${BASEPROXY}" -upstream "127.0.0.1:${HELLO}"
wait_http baseproxy "http://127.0.0.1:${BASEPROXY}/hello"
measure b2 "(b2) bare fasthttp reverse proxy → function" "http://127.0.0.1:${BASEPROXY}/hello" \
  "${bench}/post.lua" baseproxy hello || true
stop baseproxy
fi

if want c; then
free_port ROUTER_PASS
start_router router-pass "${ROUTER_PASS}" --state-dir "${tmp}/state-pass"
measure c "(c) router pass-through → function" "http://127.0.0.1:${ROUTER_PASS}/v1/functions/hello/hello" \
  "${bench}/post.lua" router-pass hello || true
stop router-pass
fi

# stateful ID TITLE ROUTER_ARGS... measures stateful calls through a router of its own on the
# local store (started with ROUTER_ARGS), warming every actor first and checking the counters
# after. STATEFUL_IDEM=1 gives every call an Idempotency-Key; STATEFUL_SYNCS=1 counts the
# store's fsyncs per call.
stateful() {
  local id="$1" title="$2" port base
  shift 2
  free_port port
  start_router "router-${id}" "${port}" --state-dir "${tmp}/state-${id}" "$@"
  base="http://127.0.0.1:${port}"
  log "${title%% *} warming ${ACTORS} actors"
  warm_actors "${base}"
  [[ "${STATEFUL_SYNCS:-0}" != 1 ]] || SYNCS_URL="${base}"
  if IDEM="${STATEFUL_IDEM:-}" measure "${id}" "${title}" "${base}" "${bench}/actors.lua" "router-${id}" counter; then
    check_counts "${id}" "${base}"
  fi
  SYNCS_URL=""
  stop "router-${id}"
}

! want d || stateful d "(d) router stateful, cache hit, write-behind" --write-mode write-behind
# (d') isolates the call path from the flush: with a flush interval longer than the run, the
# write-behind state is written only when the router stops, after the measurements.
! want d1 || stateful d1 "(d') the same, no flush during the run" --write-mode write-behind --flush-interval 1h
# (d'k): the same calls, each with an Idempotency-Key of its own.
! want d1k || STATEFUL_IDEM=1 stateful d1k "(d'k) the same, an Idempotency-Key on every call" --write-mode write-behind --flush-interval 1h
# (f): write-through to the local store, the default of `knactor up`.
! want f || STATEFUL_SYNCS=1 stateful f "(f) router stateful, write-through to the local store" --write-mode write-through

if [[ "${MINIO}" == 1 ]] && want e; then
  # MinIO runs only now, so its background work cannot disturb the other targets.
  free_port MINIO_PORT
  free_port MINIO_CONSOLE
  free_port ROUTER_S3
  minio_user="bench-${RANDOM}${RANDOM}"
  minio_pass="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  MINIO_ROOT_USER="${minio_user}" MINIO_ROOT_PASSWORD="${minio_pass}" MINIO_BROWSER=off \
    start minio "${minio_bin}" server "${tmp}/minio" --address "127.0.0.1:${MINIO_PORT}" \
    --console-address "127.0.0.1:${MINIO_CONSOLE}" --quiet
  wait_http minio "http://127.0.0.1:${MINIO_PORT}/minio/health/ready"
  KNACTOR_S3_ACCESS_KEY="${minio_user}" KNACTOR_S3_SECRET_KEY="${minio_pass}" \
    start_router router-s3 "${ROUTER_S3}" --write-mode write-through \
    --s3-endpoint "127.0.0.1:${MINIO_PORT}" --s3-bucket bench --s3-create-bucket
  log "(e) warming ${ACTORS} actors"
  warm_actors "http://127.0.0.1:${ROUTER_S3}"
  if measure e "(e) router stateful, cache hit, write-through to MinIO" "http://127.0.0.1:${ROUTER_S3}" \
    "${bench}/actors.lua" router-s3 counter minio; then
    check_counts e "http://127.0.0.1:${ROUTER_S3}"
  fi
  stop router-s3
  stop minio
fi

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

# The disk's fsync latency where the stores live: 1000 writes of 100 bytes, each with O_DSYNC.
FSYNC_US="$(dd if=/dev/zero of="${tmp}/fsync.probe" bs=100 count=1000 oflag=dsync 2>&1 |
  awk '/copied/ { for (i = 1; i <= NF; i++) if ($i ~ /^s,?$/) { printf "%.0f", $(i - 1) * 1e6 / 1000; exit } }')"
rm -f "${tmp}/fsync.probe"

# ratio ID C BASE prints ID's req/s over BASE's at C connections.
ratio() {
  awk -v x="${RPS["$1,$2"]:-}" -v y="${RPS["$3,$2"]:-}" 'BEGIN { if (x > 0 && y > 0) printf "%.2f×", x / y; else print "–" }'
}

table() {
  echo "| target | conns | req/s | p50 | p99 | ÷ (a) | ÷ (b) | CPU µs/req: proxy · function | proxy syscalls/req: reads · writes · all | CPU used elsewhere | errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  local id c e o
  for id in "${targets[@]}"; do
    for c in ${CONNS}; do
      e="${ERRS["${id},${c}"]:-–}"
      [[ "${e}" == 0 || "${e}" == – ]] || e="**${e} ⚠**"
      if [[ -n "${BROKEN[${id}]:-}" ]]; then
        printf '| %s | %s | – | – | – | – | – | – | – | – | **%s** |\n' "${TITLE[${id}]}" "${c}" "${BROKEN[${id}]}"
        continue
      fi
      o="${OTHER["${id},${c}"]:-?}%"
      [[ "${o}" == "?%" ]] || ((${o%\%} <= 10)) || o="**${o} ⚠**"
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${TITLE[${id}]}" "${c}" \
        "$(awk -v r="${RPS["${id},${c}"]:-}" 'BEGIN { if (r == "") print "–"; else printf "%.1fk", r / 1000 }')" \
        "$(fmt_us "${P50["${id},${c}"]:-}")" "$(fmt_us "${P99["${id},${c}"]:-}")" \
        "$(ratio "${id}" "${c}" a)" "$(ratio "${id}" "${c}" b)" "${CPU["${id},${c}"]:-–}" "${SYSCALLS["${id}"]:-–}" "${o}" "${e}"
    done
  done
}

echo
echo "DURATION=${DURATION} WARMUP=${WARMUP} THREADS=${THREADS} PIN=${PIN} ACTORS=${ACTORS}; $(nproc) CPUs; $(go version | cut -d' ' -f3-4); took ${SECONDS}s"
echo
table | tee ${OUT:+"${OUT}"}
if [[ -n "${RPS["d1k,${CONNS%% *}"]:-}" ]]; then
  echo
  for c in ${CONNS}; do
    echo "Idempotency-Key on every call, (d'k) ÷ (d') at ${c} connections: $(ratio d1k "${c}" d1) of the calls/s"
  done | tee -a ${OUT:+"${OUT}"}
fi
{
  echo
  for c in ${CONNS}; do
    [[ -n "${RPS["b2,${c}"]:-}" && -n "${RPS["c,${c}"]:-}" ]] && echo "Pass-through over the bare fasthttp proxy, (c) ÷ (b2) at ${c} connections: $(ratio c "${c}" b2) of the requests/s; (b2) ÷ (b): $(ratio b2 "${c}" b) (the stack's own ratio to nginx)"
    [[ -n "${RPS["d,${c}"]:-}" ]] && echo "Write-behind with its flush, (d) ÷ (d') at ${c} connections: $(ratio d "${c}" d1) of the calls/s (goal ≥ 0.85×)"
    [[ -n "${RPS["f,${c}"]:-}" ]] && echo "Write-through to the local store, (f) ÷ (d') at ${c} connections: $(ratio f "${c}" d1) of the calls/s (goal ≥ 0.5×); $(awk -v s="${SYNCS["f,${c}"]:-?}" 'BEGIN { if (s == "?") print "?"; else printf "%.3f", s }') log fsyncs per call"
  done
  if [[ -n "${P50["f,1"]:-}" && -n "${P50["d1,1"]:-}" ]]; then
    echo "At 1 connection: (f) p50 $(fmt_us "${P50["f,1"]}") − (d') p50 $(fmt_us "${P50["d1,1"]}") = $((${P50["f,1"]} - ${P50["d1,1"]})) µs; the disk's fsync latency ${FSYNC_US} µs (goal: the difference ≤ fsync + 200 µs)"
  fi
} | tee -a ${OUT:+"${OUT}"}
if ((failures > 0)); then
  die "${failures} run(s) or check(s) failed (see the !!!!!!!! lines above): flagged rows are not valid"
fi
