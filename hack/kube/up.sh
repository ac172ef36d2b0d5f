#!/usr/bin/env bash
# Starts a real Kubernetes control plane for a human to poke at: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (fake nodes and pods), all inside a private
# network namespace that holds only loopback, all bound to 127.0.0.1. Pods on the fake node get
# loopback IPs from 127.1.0.0/16, so a real process can listen on a pod's IP:port inside the
# namespace. Stops everything (by PID) on Ctrl-C.
#
#   sudo hack/kube/up.sh
#
# Needs root (a network namespace), openssl, nsenter/unshare/setsid (util-linux) and ip
# (iproute2). The binaries are built first by hack/kube/install.sh, outside the namespace, because
# building needs the Go module proxy and the namespace has no way out.
#
# Environment:
#   KNACTOR_KUBE_DIR  directory for certificates, etcd data, logs and the kubeconfig; kept at exit
#                     when given (default: a fresh temp dir, removed at exit)
#   KWOK_NODES        number of fake nodes to create (default 1)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { echo "hack/kube/up.sh: $*" >&2; }

if [[ ${EUID} -ne 0 ]]; then
  log "needs root to create a network namespace (try: sudo -E $0)"
  exit 1
fi
for tool in openssl unshare nsenter setsid ip curl; do
  command -v "${tool}" >/dev/null || {
    log "needs ${tool}"
    exit 1
  }
done

# Build (or find) the binaries while the module proxy is reachable.
declare -A bin
while read -r name path; do
  bin[${name}]="${path}"
done < <("${here}/install.sh" --paths)

keep=false
if [[ -n "${KNACTOR_KUBE_DIR:-}" ]]; then
  dir="${KNACTOR_KUBE_DIR}"
  keep=true
  mkdir -p "${dir}"
else
  dir="$(mktemp -d /tmp/knactor-kube.XXXXXX)"
fi
dir="$(cd "${dir}" && pwd)"
mkdir -p "${dir}/pki" "${dir}/logs" "${dir}/etcd" "${dir}/kcm"

# Inside the private namespace nothing else listens, so fixed ports are fine.
etcd_port=2379 etcd_peer_port=2380 api_port=6443 kcm_port=10257 sched_port=10259 kwok_port=10247
server="https://127.0.0.1:${api_port}"

names=() pids=()
holder=""

stop() {
  trap - INT TERM EXIT
  log "stopping"
  # Reverse start order: kwok, scheduler, controller-manager, apiserver, etcd. SIGTERM first,
  # SIGKILL after a grace period, by PID only.
  local i pid waited
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid="${pids[i]}"
    kill -TERM "${pid}" 2>/dev/null || continue
    for ((waited = 0; waited < 100; waited++)); do
      kill -0 "${pid}" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "${pid}" 2>/dev/null; then
      log "${names[i]} (pid ${pid}) ignored SIGTERM for 10 s; killing"
      kill -KILL "${pid}" 2>/dev/null || true
    fi
    wait "${pid}" 2>/dev/null || true
  done
  if [[ -n "${holder}" ]]; then
    kill -KILL "${holder}" 2>/dev/null || true
    wait "${holder}" 2>/dev/null || true
  fi
  if [[ "${keep}" == true ]]; then
    log "kept ${dir}"
  else
    rm -rf "${dir}"
  fi
}
trap stop EXIT
trap 'exit 130' INT TERM

# The namespace lives as long as this holder process; every component joins it with nsenter.
setsid unshare --net sleep infinity &
holder=$!
netns="/proc/${holder}/ns/net"
for ((i = 0; i < 50; i++)); do
  [[ "$(readlink "${netns}" 2>/dev/null)" != "$(readlink /proc/self/ns/net)" ]] && break
  sleep 0.02
done
nsenter --net="${netns}" ip link set lo up
inns() { nsenter --net="${netns}" "$@"; }

# run NAME CMD...: starts a component inside the namespace in its own session (so a Ctrl-C on the
# terminal reaches only this script, which then stops the components in order), logging to
# logs/NAME.log. setsid and nsenter exec, so $! is the component's own PID.
run() {
  local name="$1"
  shift
  setsid nsenter --net="${netns}" "$@" >"${dir}/logs/${name}.log" 2>&1 </dev/null &
  names+=("${name}")
  pids+=($!)
}

pid_of() {
  local i
  for i in "${!names[@]}"; do
    [[ "${names[i]}" == "$1" ]] && echo "${pids[i]}" && return
  done
}

# wait_url NAME URL [CURL ARGS...]: polls URL from inside the namespace until it answers 2xx.
wait_url() {
  local name="$1" url="$2" i
  shift 2
  for ((i = 0; i < 600; i++)); do
    if inns curl -fsS -o /dev/null --max-time 1 "$@" "${url}" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$(pid_of "${name}")" 2>/dev/null; then
      break
    fi
    sleep 0.05
  done
  log "${name} did not become ready at ${url}; last lines of ${dir}/logs/${name}.log:"
  tail -n 30 "${dir}/logs/${name}.log" >&2
  exit 1
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
start_ms=$(now_ms)
phase_ms=${start_ms}
phases=""
# phase NAME: records how long the step since the previous phase took.
phase() {
  local now
  now=$(now_ms)
  phases+="${phases:+, }$1 $(((now - phase_ms) / 1000)).$(((now - phase_ms) % 1000 / 100)) s"
  phase_ms=${now}
}

# --- certificates: a CA, the apiserver's serving cert (SAN 127.0.0.1), a service-account key
pki="${dir}/pki"
# ECDSA P-256 keys: generated in milliseconds (RSA takes ~0.5 s each on a busy 2-core machine).
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -days 30 -subj "/CN=knactor-test-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
  -keyout "${pki}/ca.key" -out "${pki}/ca.crt" 2>/dev/null
openssl req "${ec[@]}" -subj "/CN=kube-apiserver" \
  -keyout "${pki}/apiserver.key" -out "${pki}/apiserver.csr" 2>/dev/null
cat >"${pki}/apiserver.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:127.2.0.1
EOF
openssl x509 -req -days 30 -in "${pki}/apiserver.csr" -CA "${pki}/ca.crt" -CAkey "${pki}/ca.key" \
  -CAcreateserial -extfile "${pki}/apiserver.ext" -out "${pki}/apiserver.crt" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "${pki}/sa.key" 2>/dev/null
openssl ec -in "${pki}/sa.key" -pubout -out "${pki}/sa.pub" 2>/dev/null

# One admin identity (system:masters) by static token, shared by the components and the user.
token="$(openssl rand -hex 16)"
echo "${token},admin,admin,system:masters" >"${pki}/tokens.csv"
kubeconfig="${dir}/kubeconfig"
cat >"${kubeconfig}" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: knactor-test
  cluster:
    server: ${server}
    certificate-authority: ${pki}/ca.crt
users:
- name: admin
  user:
    token: ${token}
contexts:
- name: knactor-test
  context:
    cluster: knactor-test
    user: admin
    namespace: default
current-context: knactor-test
EOF
chmod 600 "${kubeconfig}" "${pki}"/*.key
phase certificates

# --- etcd
run etcd "${bin[etcd]}" --name=default --data-dir="${dir}/etcd/data" \
  --listen-client-urls="http://127.0.0.1:${etcd_port}" --advertise-client-urls="http://127.0.0.1:${etcd_port}" \
  --listen-peer-urls="http://127.0.0.1:${etcd_peer_port}" --initial-advertise-peer-urls="http://127.0.0.1:${etcd_peer_port}" \
  --initial-cluster="default=http://127.0.0.1:${etcd_peer_port}" --unsafe-no-fsync --log-level=warn \
  --heartbeat-interval=10 --election-timeout=100
wait_url etcd "http://127.0.0.1:${etcd_port}/health"
phase etcd

# --- kube-apiserver
run kube-apiserver "${bin[kube-apiserver]}" \
  --etcd-servers="http://127.0.0.1:${etcd_port}" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="${api_port}" \
  --tls-cert-file="${pki}/apiserver.crt" --tls-private-key-file="${pki}/apiserver.key" \
  --client-ca-file="${pki}/ca.crt" --token-auth-file="${pki}/tokens.csv" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="${pki}/sa.pub" --service-account-signing-key-file="${pki}/sa.key" \
  --authorization-mode=RBAC --service-cluster-ip-range=127.2.0.0/16 \
  --disable-admission-plugins=ServiceAccount --endpoint-reconciler-type=none \
  --profiling=false
wait_url kube-apiserver "${server}/readyz" --cacert "${pki}/ca.crt" -H "Authorization: Bearer ${token}"
phase kube-apiserver

# --- controller-manager, scheduler, kwok (in parallel; each waits for the apiserver itself)
run kube-controller-manager "${bin[kube-controller-manager]}" --kubeconfig="${kubeconfig}" \
  --leader-elect=false --bind-address=127.0.0.1 --secure-port="${kcm_port}" --cert-dir="${dir}/kcm" \
  --controllers='*,-nodeipam,-cloud-node-lifecycle,-route,-service,-bootstrapsigner,-tokencleaner' \
  --service-account-private-key-file="${pki}/sa.key" --root-ca-file="${pki}/ca.crt" \
  --cluster-signing-cert-file="${pki}/ca.crt" --cluster-signing-key-file="${pki}/ca.key" \
  --use-service-account-credentials=false --profiling=false
run kube-scheduler "${bin[kube-scheduler]}" --kubeconfig="${kubeconfig}" \
  --leader-elect=false --bind-address=127.0.0.1 --secure-port="${sched_port}" --profiling=false
run kwok "${bin[kwok]}" --kubeconfig="${kubeconfig}" \
  --manage-all-nodes=true --cidr=127.1.0.1/16 --node-ip=127.0.0.1 \
  --server-address="127.0.0.1:${kwok_port}"
wait_url kube-controller-manager "https://127.0.0.1:${kcm_port}/healthz" -k
wait_url kube-scheduler "https://127.0.0.1:${sched_port}/healthz" -k
wait_url kwok "http://127.0.0.1:${kwok_port}/healthz"
phase controller-manager+scheduler+kwok

# --- fake node(s); kwok marks them Ready and runs their pods at 127.1.x.y
kubectl() { inns "${bin[kubectl]}" --kubeconfig="${kubeconfig}" "$@"; }
for ((i = 0; i < ${KWOK_NODES:-1}; i++)); do
  kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-${i}
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-${i}
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
    kwok.x-k8s.io/node: fake
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOF
done
kubectl wait --for=condition=Ready node --all --timeout=60s >/dev/null
phase "node Ready"

elapsed=$(($(now_ms) - start_ms))

# Helpers for a shell outside the namespace.
cat >"${dir}/kubectl" <<EOF
#!/bin/sh
exec nsenter --net=${netns} ${bin[kubectl]} --kubeconfig=${kubeconfig} "\$@"
EOF
cat >"${dir}/enter" <<EOF
#!/bin/sh
# A shell (or the given command) inside the cluster's network namespace, with KUBECONFIG set.
export KUBECONFIG=${kubeconfig}
export PATH=${dir}/bin:\$PATH
[ \$# -gt 0 ] || set -- "\${SHELL:-/bin/sh}"
exec nsenter --net=${netns} "\$@"
EOF
mkdir -p "${dir}/bin"
ln -sf "${bin[kubectl]}" "${dir}/bin/kubectl"
chmod +x "${dir}/kubectl" "${dir}/enter"

cat >&2 <<EOF

Kubernetes ${bin[kube-apiserver]##*-} is up in $((elapsed / 1000)).$((elapsed % 1000 / 100)) s [${phases}] (network namespace of pid ${holder}; only loopback inside).

  ${dir}/kubectl get nodes,pods -A        # kubectl from any shell (runs inside the namespace)
  ${dir}/enter                            # a shell inside the namespace, KUBECONFIG set, kubectl on PATH
  sudo nsenter --net=${netns} CMD         # any command inside, e.g. a server on a pod IP

  API server  ${server}   (kubeconfig ${kubeconfig})
  etcd        http://127.0.0.1:${etcd_port}
  logs        ${dir}/logs/
  pod IPs     127.1.0.0/16 on the fake node(s); listen on a pod's IP inside the namespace to serve it

Ctrl-C stops everything.
EOF

# Watch the components; if one dies, say so and tear down the rest.
while sleep 1; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[i]}" 2>/dev/null; then
      log "${names[i]} (pid ${pids[i]}) exited; last lines of its log:"
      tail -n 30 "${dir}/logs/${names[i]}.log" >&2
      exit 1
    fi
  done
done
