#!/usr/bin/env bash
# CI for the Go binding: lint (gofmt, go vet) and the race-detector test suite
# against the real libhap and the repo's fake token server. Run from anywhere,
# after `cargo build --release` at the repository root. Needs: go, gcc, python3.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

# The package links ../../target/release/libhap.a (statically) by default. If CI points
# HAP_LIBRARY_PATH at another build, link the libhap.a beside it instead.
if [[ -n "${HAP_LIBRARY_PATH:-}" ]]; then
  libdir="$(cd "$(dirname "$HAP_LIBRARY_PATH")" && pwd)"
  export CGO_LDFLAGS="-L$libdir ${CGO_LDFLAGS:-}"
  lib="$libdir/libhap.a"
else
  lib="../../target/release/libhap.a"
fi
if [[ ! -f "$lib" ]]; then
  echo "ci.sh: $lib not found: run 'cargo build --release' at the repository root first" >&2
  exit 1
fi
export CGO_ENABLED=1

go version

echo "--- gofmt"
unformatted="$(gofmt -l .)"
if [[ -n "$unformatted" ]]; then
  echo "gofmt would reformat:" >&2
  echo "$unformatted" >&2
  exit 1
fi

echo "--- go vet"
go vet ./...

echo "--- staticcheck"
# Pinned; fetched through the Go module proxy, built once into the Go cache.
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

echo "--- go test -race"
go test -race -count=1 -timeout 300s ./...
