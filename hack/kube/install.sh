#!/usr/bin/env bash
# Builds the binaries of a real Kubernetes control plane for tests into the project-local bin/
# through the Go toolchain, and prints the bin directory on stdout (progress goes to stderr).
#
#   hack/kube/install.sh                 # everything: etcd kube-apiserver kube-controller-manager
#                                        #   kube-scheduler kubectl kwok knative-controller
#                                        #   knative-webhook knative-yaml (a directory)
#   hack/kube/install.sh etcd kwok       # only these
#   hack/kube/install.sh --paths [NAME]  # print "NAME PATH" lines instead of the bin directory
#
# Each binary is kept as bin/<name>-<version> (e.g. bin/kube-apiserver-v1.34.4) and rebuilt only
# when missing, so a version bump in a tools module builds the new version next to the old one.
# Versions come from the tools modules under hack/kube/tools/, whose go.mod and go.sum are
# committed: a clean machine resolves exactly the same module versions. The modules are separate
# from the main module (their own go.mod), so the main go.mod never sees Kubernetes' dependencies.
#
# Cold builds on 2 cores (see hack/kube/README.md for the measured numbers): kube-apiserver takes
# 6-10 min and ~2 GB of memory; everything together 12-20 min. Builds run one at a time, and a lock
# makes concurrent callers (several test packages at once) wait for each other instead of
# building the same thing twice.
#
# The builds need the Go module proxy: run this before entering a network namespace without
# outside connectivity (test/kubetest does that for the tests).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/../.." && pwd)"
bindir="${KNACTOR_BIN_DIR:-${root}/bin}"
tools="${here}/tools"

all=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok knative-controller knative-webhook knative-yaml)
paths=false
if [[ "${1:-}" == "--paths" ]]; then
  paths=true
  shift
fi
want=("$@")
if [[ ${#want[@]} -eq 0 ]]; then
  want=("${all[@]}")
fi
for name in "${want[@]}"; do
  if [[ " ${all[*]} " != *" ${name} "* ]]; then
    echo "hack/kube/install.sh: unknown binary ${name} (known: ${all[*]})" >&2
    exit 2
  fi
done

log() { echo "hack/kube/install.sh: $*" >&2; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# since MS prints the time elapsed since MS (from now_ms) as "12.3 s".
since() {
  local d=$(($(now_ms) - $1))
  printf '%d.%d s' $((d / 1000)) $((d % 1000 / 100))
}

# modversion DIR MODULE prints MODULE's version as pinned in DIR/go.mod.
modversion() {
  local v
  v="$(awk -v m="$2" '($1 == m && $2 ~ /^v/) { print $2; exit } ($1 == "require" && $2 == m) { print $3; exit }' "$1/go.mod")"
  if [[ -z "${v}" ]]; then
    log "cannot find ${2} in $1/go.mod"
    exit 1
  fi
  echo "${v}"
}

etcd_version="$(modversion "${tools}/etcd" go.etcd.io/etcd/server/v3)"
kube_version="$(modversion "${tools}/kubernetes" k8s.io/kubernetes)"
kwok_version="$(modversion "${tools}/kwok" sigs.k8s.io/kwok)"
knative_version="$(modversion "${tools}/knative" knative.dev/serving)"
# knative_yaml_layout versions what knative_yaml copies: bump it when that changes, so a
# bin/knative-yaml-* collected by an older script is collected again (next to the old one) instead
# of being used without the new files. 2: adds webhooks/.
knative_yaml_layout=2

# version NAME prints the version that keys NAME's binary.
version() {
  case "$1" in
    etcd) echo "${etcd_version}" ;;
    kube-apiserver | kube-controller-manager | kube-scheduler | kubectl) echo "${kube_version}" ;;
    kwok) echo "${kwok_version}" ;;
    knative-yaml) echo "${knative_version}.layout${knative_yaml_layout}" ;;
    knative-*) echo "${knative_version}" ;;
  esac
}

# Kubernetes clients parse the server's version; without these the build reports v0.0.0-master
# and e.g. kubectl and client-go discovery complain. kube_minor is "34" for v1.34.4.
kube_minor="$(echo "${kube_version}" | cut -d. -f2)"
kube_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X ${pkg}.gitVersion=${kube_version} -X ${pkg}.gitMajor=1"
  kube_ldflags+=" -X ${pkg}.gitMinor=${kube_minor} -X ${pkg}.gitTreeState=clean"
done

# build NAME: go build of NAME's package inside its tools module into bin/NAME-VERSION.
build() {
  local name="$1" ver dir pkg ldflags target start
  ver="$(version "${name}")"
  target="${bindir}/${name}-${ver}"
  if [[ -x "${target}" ]]; then
    return 0
  fi
  case "${name}" in
    knative-yaml)
      knative_yaml "${target}"
      return 0
      ;;
    etcd)
      dir="${tools}/etcd" pkg="go.etcd.io/etcd/server/v3" ldflags=""
      ;;
    knative-controller | knative-webhook)
      dir="${tools}/knative" pkg="knative.dev/serving/cmd/${name#knative-}" ldflags=""
      ;;
    kwok)
      dir="${tools}/kwok" pkg="sigs.k8s.io/kwok/cmd/kwok"
      ldflags="-X sigs.k8s.io/kwok/pkg/consts.Version=${kwok_version}"
      ;;
    *)
      dir="${tools}/kubernetes" pkg="k8s.io/kubernetes/cmd/${name}" ldflags="${kube_ldflags}"
      ;;
  esac
  # -s -w: no symbol table or DWARF (panics still print symbolized stacks): ~30% smaller
  # binaries and a faster link.
  ldflags="-s -w ${ldflags}"
  log "building ${name} ${ver} (${pkg}); first time only"
  start="$(now_ms)"
  # GOFLAGS is pinned so a caller's -mod=mod/vendor cannot rewrite the committed go.mod/go.sum;
  # GOWORK=off keeps any go.work out of it.
  (cd "${dir}" && GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" \
    go build -o "${tmp}/${name}" -ldflags "${ldflags}" "${pkg}") >&2
  mv -f "${tmp}/${name}" "${target}"
  log "built ${target} in $(since "${start}")"
}

# knative_yaml DIR copies the Knative Serving objects a test cluster needs from the module cache
# (the tools module's versions) into DIR: the CRDs of serving, networking (Ingress, Certificate,
# ServerlessService, ...) and caching (Image), the default ConfigMaps, and the webhook's
# configurations (MutatingWebhookConfiguration webhook.serving.knative.dev,
# ValidatingWebhookConfigurations validation.webhook.serving.knative.dev and
# config.webhook.serving.knative.dev) with its certificate Secret webhook-certs. The module zips
# drop symlinked files, so config-network comes from knative.dev/networking.
knative_yaml() {
  local target="$1" out serving networking caching
  log "collecting Knative Serving ${knative_version} CRDs, ConfigMaps and webhook configurations"
  out="${tmp}/knative-yaml"
  mkdir -p "${out}/crds" "${out}/configmaps" "${out}/webhooks"
  local dirs
  mapfile -t dirs < <(cd "${tools}/knative" && GOWORK=off GOFLAGS="-mod=readonly" \
    go list -m -f '{{.Dir}}' knative.dev/serving knative.dev/networking knative.dev/caching)
  serving="${dirs[0]}" networking="${dirs[1]}" caching="${dirs[2]}"
  cp "${serving}"/config/core/300-resources/*.yaml "${out}/crds/"
  cp "${networking}"/config/{certificate,domain-claim,ingress,serverlessservice}.yaml "${out}/crds/"
  cp "${caching}"/config/image.yaml "${out}/crds/"
  cp "${serving}"/config/core/configmaps/*.yaml "${networking}/config/config-network.yaml" "${out}/configmaps/"
  cp "${serving}"/config/core/webhooks/*.yaml "${out}/webhooks/"
  chmod -R u+w "${out}"
  mv "${out}" "${target}"
  log "collected ${target}"
}

# result prints what the caller asked for: the bin directory, or one "NAME PATH" line per binary.
result() {
  if [[ "${paths}" == true ]]; then
    for name in "${want[@]}"; do
      echo "${name} ${bindir}/${name}-$(version "${name}")"
    done
  else
    echo "${bindir}"
  fi
}

# Fast path: everything present, no lock, no go invocation.
missing=()
for name in "${want[@]}"; do
  if [[ ! -x "${bindir}/${name}-$(version "${name}")" ]]; then
    missing+=("${name}")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  result
  exit 0
fi

mkdir -p "${bindir}"
exec 9>"${bindir}/.kube-install.lock"
if ! flock -n 9; then
  log "another install is running; waiting for it"
  flock 9
fi
tmp="$(mktemp -d "${bindir}/.kube-build.XXXXXX")"
trap 'rm -rf "${tmp}"' EXIT

total_start="$(now_ms)"
for name in "${missing[@]}"; do
  build "${name}"
done
log "done in $(since "${total_start}")"
result
