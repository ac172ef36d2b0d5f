#!/usr/bin/env bash
# Installs Debian's chromium for the status page's browser test (test/e2e/ui_test.go) when it is
# missing, and prints its path on stdout. Idempotent and quiet: nothing is fetched when
# /usr/bin/chromium exists. Needs root and apt-get (CI has both); without them it says so on
# stderr and exits 1, and the browser test skips with that reason.
set -euo pipefail

bin="${KNACTOR_CHROMIUM:-/usr/bin/chromium}"
if [[ -x "${bin}" ]]; then
  echo "${bin}"
  exit 0
fi
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
  echo "hack/install-chromium.sh: chromium is not installed and this is not root with apt-get: install Debian's chromium package" >&2
  exit 1
fi
echo "hack/install-chromium.sh: installing Debian's chromium (first time only)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
echo /usr/bin/chromium
