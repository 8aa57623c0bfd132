// Package demoworker is the Go participant of the README demo: one process,
// one ResolveToken, one JSON line. cmd/hap-demo-worker is its main, and the
// test suite re-executes its own binary into Run for the multi-process test,
// so the demo and the test run the same code.
package demoworker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	hap "github.com/hap-oauth/hap/bindings/go"
)

type success struct {
	Lang         string `json:"lang"`
	PID          int    `json:"pid"`
	CredentialID string `json:"credential_id"`
	Refreshed    bool   `json:"refreshed"`
	TokenSHA256  string `json:"token_sha256"`
}

type failure struct {
	Lang    string `json:"lang"`
	PID     int    `json:"pid"`
	Error   string `json:"error"`
	Message string `json:"message"`
}

// Run reads HAP_DEMO_CONFIG (the pool config JSON of docs/ABI.md) and the optional
// HAP_DEMO_START_AT_MS (epoch ms to sleep until, so many workers resolve at
// once) through getenv, resolves once, writes one JSON line to stdout and
// returns the exit code (0 or 1).
func Run(stdout io.Writer, getenv func(string) string) int {
	pid := os.Getpid()
	fail := func(name, msg string) int {
		writeLine(stdout, failure{Lang: "go", PID: pid, Error: name, Message: msg})
		return 1
	}
	failErr := func(err error) int {
		var he *hap.Error
		if errors.As(err, &he) {
			return fail(he.Name, he.Message)
		}
		return fail("HAP_STATUS_INTERNAL", err.Error())
	}

	cfgJSON := getenv("HAP_DEMO_CONFIG")
	if cfgJSON == "" {
		// Refuse rather than fall back to the user's real ~/.claude files.
		return fail("HAP_STATUS_INVALID_ARGUMENT", "HAP_DEMO_CONFIG is not set")
	}
	var cfg hap.Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		return failErr(err)
	}
	var startAt time.Time
	if s := getenv("HAP_DEMO_START_AT_MS"); s != "" {
		ms, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fail("HAP_STATUS_INVALID_ARGUMENT", fmt.Sprintf("HAP_DEMO_START_AT_MS=%q is not epoch milliseconds", s))
		}
		startAt = time.UnixMilli(int64(ms))
	}

	// Open before the rendezvous so that the workers collide on the resolve.
	pool, err := hap.Open(cfg)
	if err != nil {
		return failErr(err)
	}
	defer pool.Close()

	if !startAt.IsZero() {
		time.Sleep(time.Until(startAt))
	}
	tok, err := pool.ResolveToken(hap.ResolveOptions{})
	if err != nil {
		return failErr(err)
	}
	sum := sha256.Sum256([]byte(tok.AccessToken()))
	writeLine(stdout, success{
		Lang:         "go",
		PID:          pid,
		CredentialID: tok.CredentialID,
		Refreshed:    tok.Refreshed,
		TokenSHA256:  hex.EncodeToString(sum[:])[:12],
	})
	return 0
}

func writeLine(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	b = append(b, '\n')
	_, _ = w.Write(b)
}
