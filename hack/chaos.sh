#!/usr/bin/env bash
# Runs knactor's chaos tests (test/chaos) and writes their figures into docs/reliability.md: each
# test breaks something on purpose under load (freezes MinIO, SIGKILLs a router or `knactor up`,
# runs two routers on one bucket, injects store faults through a proxy), then counts every call
# exactly. Installs the pinned MinIO first (hack/install-minio.sh). Takes about a minute and a
# half; extra arguments go to `go test`, e.g. `hack/chaos.sh -run TwoRouters`.
#
# The same tests run in the whole suite (hack/test.sh) without touching the docs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

KNACTOR_MINIO_BIN="$(hack/install-minio.sh)"
export KNACTOR_MINIO_BIN
export KNACTOR_CHAOS_DOCS="${PWD}/docs/reliability.md"
go test -count=1 -v -timeout 15m "$@" ./test/chaos/ | grep -E '^(=== RUN|--- |PASS|FAIL|ok)|figures:|_test\.go'
echo "docs/reliability.md updated; machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(go version | cut -d' ' -f3)"
