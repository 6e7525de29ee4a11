#!/usr/bin/env bash
# Builds SPIRE's spire-server and spire-agent into $(go env GOPATH)/bin, for the
# SPIRE end-to-end test (test/e2e/spire.test.ts). Skips the build when both
# binaries of the pinned version are already there. A build takes a long time on
# a small machine (tens of minutes on 2 cores); the result is cached.
#
# The Go module proxy refuses `go install module/cmd@version` for SPIRE (its
# go.mod has replace directives), so the commands are fetched as tools of a
# throwaway module and installed from there.
set -euo pipefail

SPIRE_VERSION="${SPIRE_VERSION:-v1.13.3}"

if ! command -v go >/dev/null 2>&1; then
  echo "install-spire: Go is needed to build SPIRE (https://go.dev/dl/)" >&2
  exit 1
fi
BIN="$(go env GOPATH)/bin"

have() {
  [ -x "$BIN/$1" ] && "$BIN/$1" --version 2>&1 | grep -q "^${SPIRE_VERSION#v}"
}

if have spire-server && have spire-agent; then
  echo "install-spire: spire-server and spire-agent ${SPIRE_VERSION} already in $BIN"
  exit 0
fi

# SPIRE's SQLite datastore needs cgo, so a C compiler.
if ! command -v gcc >/dev/null 2>&1; then
  echo "install-spire: installing gcc (cgo, for SPIRE's SQLite datastore)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq gcc libc6-dev >/dev/null
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "install-spire: building spire-server and spire-agent ${SPIRE_VERSION} (slow the first time)"
go mod init countersign.local/spire-build >/dev/null 2>&1
export CGO_ENABLED=1
go get -tool "github.com/spiffe/spire/cmd/spire-server@${SPIRE_VERSION}" "github.com/spiffe/spire/cmd/spire-agent@${SPIRE_VERSION}"
go install github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
have spire-server && have spire-agent || { echo "install-spire: the build did not produce ${SPIRE_VERSION} binaries in $BIN" >&2; exit 1; }
echo "install-spire: installed into $BIN"
