// Command hap-demo-worker is the Go worker of the README demo: it reads the
// pool config JSON from HAP_DEMO_CONFIG, optionally sleeps until
// HAP_DEMO_START_AT_MS (epoch ms), resolves one token through the Go binding
// and prints one JSON line:
//
//	{"lang": "go", "pid": N, "credential_id": "...", "refreshed": bool, "token_sha256": "<12 hex>"}
//
// or, exiting 1, {"lang": "go", "pid": N, "error": "<HAP_STATUS_NAME>", "message": "..."}.
//
// Build it once, then start as many as you like:
//
//	go build -o /tmp/hap-demo-worker ./cmd/hap-demo-worker
package main

import (
	"os"

	"github.com/hap-oauth/hap/bindings/go/internal/demoworker"
)

func main() {
	os.Exit(demoworker.Run(os.Stdout, os.Getenv))
}
