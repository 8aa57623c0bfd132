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

# hapauth: the http.RoundTripper / oauth2.TokenSource adapters, a module of its
# own so that golang.org/x/oauth2 stays out of this one; hapauth/sdktest: the
# recipe for the official SDK (anthropic-sdk-go/v2, Go 1.25+), test-only, its
# own module too. Both reach this binding through a `replace` to ../, so they
# link the same libhap (CGO_LDFLAGS above applies).
echo "--- hapauth: go vet, staticcheck, go test -race"
(
  cd hapauth
  go vet ./...
  go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
  go test -race -count=1 -timeout 120s ./...
)
# No separate go vet and no -race here: the package is one test file (go test
# runs vet's default checks on it), and compiling the SDK is most of this
# step: ~135 s of CPU with a cold Go cache (measured); -race would compile it
# again. hapauth's own tests above run the same Transport under -race.
echo "--- hapauth/sdktest (official Go SDK recipe): go test"
(
  cd hapauth/sdktest
  go test -count=1 -timeout 120s ./...
)
