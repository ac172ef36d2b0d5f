#!/usr/bin/env bash
# Runs knactor's whole test suite, as CI does: installs what the tests need (the pinned MinIO
# server, built into bin/ on first use), checks formatting and vet, then runs every test with the
# race detector. Extra arguments go to `go test`, e.g. `hack/test.sh -short` for the fast inner
# loop (skips tests that need MinIO or real processes) or `hack/test.sh -run Cache`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n--- %s (%ds)\n' "$1" "$SECONDS"; }

step "installing test dependencies"
KNACTOR_MINIO_BIN="$(hack/install-minio.sh)"
export KNACTOR_MINIO_BIN
echo "minio: ${KNACTOR_MINIO_BIN}"
# Headless Chromium for the status page's browser test (skipped when it cannot be installed).
KNACTOR_CHROMIUM="$(hack/install-chromium.sh || true)"; export KNACTOR_CHROMIUM
# The Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, kubectl,
# kwok) is built before go test: 12-20 min cold on 2 cores, nothing once bin/ has it. The tests
# that use it run in a private network namespace where the module proxy is out of reach.
if [[ " $* " != *" -short "* ]]; then
  hack/kube/install.sh
fi

step "gofmt"
unformatted="$(find . -name '*.go' -not -path './bin/*' -not -path './.cache/*' -print0 | xargs -0 gofmt -l)"
if [[ -n "${unformatted}" ]]; then
  echo "these files need gofmt:"; echo "${unformatted}"; exit 1
fi

# The deepcopy code and the CRD YAML are generated from crds/v1alpha1: fails when they are stale
# (1.3 s once controller-gen is in the build cache, ~75 s cold; see hack/codegen.sh).
step "codegen up to date"
hack/codegen.sh --verify

step "go vet"
go vet ./...

step "go test -race"
go test -race -count=1 -timeout 45m "$@" ./...

# The hot paths' allocation budgets (router/hotpath_allocs_test.go): the race detector changes
# allocation counts, so these run once more without it (about 2 s).
if [[ " $* " != *" -short "* ]]; then
  step "allocation budgets"
  go test -count=1 -run 'Allocations$' ./router/
fi

# Every fuzz target for a bounded time (FUZZTIME, 20 s each by default; their corpora ran above).
if [[ " $* " != *" -short "* && $# -eq 0 ]]; then
  step "fuzz"
  hack/fuzz.sh
fi

step "done"
