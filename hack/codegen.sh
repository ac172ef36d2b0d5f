#!/usr/bin/env bash
# Generates what is derived from knactor's API types (crds/v1alpha1) with controller-gen:
#
#   crds/v1alpha1/zz_generated.deepcopy.go   DeepCopy* and runtime.Object (the "object" generator,
#                                            header hack/boilerplate.go.txt)
#   crds/knactor.dev_actorsystems.yaml       the CustomResourceDefinition (the "crd" generator,
#   config/300-actorsystem.yaml              header hack/boilerplate.yaml.txt), and the same file
#                                            where `kubectl apply -f config/` picks it up
#
#   hack/codegen.sh            # regenerate in place
#   hack/codegen.sh --verify   # regenerate into a temp dir; fail with a diff if the tree is stale
#
# controller-gen is sigs.k8s.io/controller-tools v0.19.0 (the release built against k8s.io/*
# v0.34), pinned by the tools module hack/tools/controller-gen (go.mod with a `tool` line and a
# committed go.sum), so the main go.mod never carries controller-tools' dependencies. It runs
# through `go tool` (go run for a module's declared tools) with -mod=readonly: the first run builds
# it into the Go build cache, later runs reuse that binary. It is run from the repository root so
# that it loads crds/... with the main module's versions of k8s.io/*.
#
# Both modes generate into a temp dir first, so a failed run never leaves half-written files.
#
# Measured here (2 cores, Go 1.26, shared with other builds):
#   --verify cold: 73 s with an empty build cache (GOCACHE) and a filled module cache: building
#     controller-gen and compiling what it loads of crds/v1alpha1's imports (k8s.io/*, minio-go).
#     An empty module cache adds the downloads (~80 s when the tools module was created).
#   --verify warm: 1.3 s (controller-gen cached, loading and type-checking crds/v1alpha1).
#   Regenerating takes the same.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

verify=false
case "${1:-}" in
  "") ;;
  --verify) verify=true ;;
  *)
    echo "usage: hack/codegen.sh [--verify]" >&2
    exit 2
    ;;
esac

# The one API package. A second version (v1beta1, ...) needs its own object output dir below
# and its deepcopy file in the lists.
api=crds/v1alpha1
crd_file=knactor.dev_actorsystems.yaml
# generated "temp path" "committed path" pairs, compared by --verify.
outputs=(
  "deepcopy/zz_generated.deepcopy.go" "${api}/zz_generated.deepcopy.go"
  "crd/${crd_file}" "crds/${crd_file}"
  "crd/${crd_file}" "config/300-actorsystem.yaml"
)

log() { echo "hack/codegen.sh: $*" >&2; }

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

# go tool -n prints the path of the cached binary, building it first when needed.
controller_gen="$(cd hack/tools/controller-gen && GOFLAGS="${GOFLAGS:-} -mod=readonly" go tool -n controller-gen)"

"${controller_gen}" \
  object:headerFile=hack/boilerplate.go.txt \
  crd:crdVersions=v1,headerFile=hack/boilerplate.yaml.txt \
  paths="./${api}/..." \
  output:object:dir="${tmp}/deepcopy" \
  output:crd:dir="${tmp}/crd"

stale=()
for ((i = 0; i < ${#outputs[@]}; i += 2)); do
  generated="${tmp}/${outputs[i]}"
  committed="${outputs[i + 1]}"
  if [[ ! -s "${generated}" ]]; then
    log "controller-gen did not write ${outputs[i]}"
    exit 1
  fi
  if ${verify}; then
    if ! diff -u --label "${committed} (committed)" --label "${committed} (generated)" \
      "${committed}" "${generated}" 2>/dev/null; then
      [[ -e "${committed}" ]] || log "${committed} is missing"
      stale+=("${committed}")
    fi
  elif ! cmp -s "${generated}" "${committed}"; then
    cp "${generated}" "${committed}"
    log "wrote ${committed}"
  fi
done

if ${verify}; then
  if [[ ${#stale[@]} -gt 0 ]]; then
    log "STALE: ${stale[*]} differ from what the types in ${api} generate (diff above)."
    log "Run hack/codegen.sh and commit the result."
    exit 1
  fi
  log "generated files are up to date"
fi
