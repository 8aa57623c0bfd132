package hap_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hap-oauth/hap/bindings/go/internal/demoworker"
)

type workerLine struct {
	Lang         string `json:"lang"`
	PID          int    `json:"pid"`
	CredentialID string `json:"credential_id"`
	Refreshed    bool   `json:"refreshed"`
	TokenSHA256  string `json:"token_sha256"`
	Error        string `json:"error"`
	Message      string `json:"message"`
}

// Several Go processes, each with its own Hermes profile (pool file), share
// one Claude Code credentials file whose token has expired. They resolve at
// the same instant: exactly one POST machine-wide, one token for all.
// Each process is this test binary re-executed as the demo worker.
func TestProcessesWithSeparateProfilesOnePost(t *testing.T) {
	srv := startServer(t)
	e := newEnv(t, srv)
	e.writeCreds(t, expired())

	const n = 4
	startAt := time.Now().Add(1500 * time.Millisecond).UnixMilli()
	cmds := make([]*exec.Cmd, n)
	outs := make([]*bytes.Buffer, n)
	for i := range cmds {
		cfg := e.config()
		cfg.PoolPath = filepath.Join(e.dir, fmt.Sprintf("profile-%d", i), "auth.json")
		cfgJSON, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(),
			"HAP_GO_TEST_ROLE=demo-worker",
			"HAP_DEMO_CONFIG="+string(cfgJSON),
			"HAP_DEMO_START_AT_MS="+strconv.FormatInt(startAt, 10))
		outs[i] = &bytes.Buffer{}
		cmd.Stdout = outs[i]
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}

	var lines []workerLine
	refreshed := 0
	for i, cmd := range cmds {
		err := cmd.Wait()
		noSecret(t, "worker output", outs[i].String())
		var l workerLine
		if jerr := json.Unmarshal(outs[i].Bytes(), &l); jerr != nil || err != nil {
			t.Fatalf("worker %d: %v, output %q", i, err, outs[i].String())
		}
		if l.Lang != "go" || l.PID != cmd.Process.Pid || len(l.TokenSHA256) != 12 || l.CredentialID == "" {
			t.Fatalf("worker %d printed %+v", i, l)
		}
		if l.Refreshed {
			refreshed++
		}
		lines = append(lines, l)
	}
	for _, l := range lines[1:] {
		if l.TokenSHA256 != lines[0].TokenSHA256 {
			t.Fatalf("processes got different tokens: %+v", lines)
		}
	}
	if posts := srv.stats(t).Posts; posts != 1 || refreshed != 1 {
		t.Fatalf("%d POSTs and %d workers refreshed, want 1 and 1", posts, refreshed)
	}
	for i := 0; i < n; i++ {
		if _, err := os.Stat(filepath.Join(e.dir, fmt.Sprintf("profile-%d", i), "auth.json")); err != nil {
			t.Errorf("profile %d pool file: %v", i, err)
		}
	}
}

// The demo worker's failure line, run in-process.
func TestDemoWorkerReportsErrors(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.config()
	cfg.NoPoolFile, cfg.PoolPath = true, ""
	cfgJSON, _ := json.Marshal(cfg)
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "HAP_STATUS_INVALID_ARGUMENT"},
		{map[string]string{"HAP_DEMO_CONFIG": `{"nope": 1}`}, "HAP_STATUS_INVALID_ARGUMENT"},
		{map[string]string{"HAP_DEMO_CONFIG": string(cfgJSON)}, "HAP_STATUS_NO_CREDENTIAL"},
	} {
		var out bytes.Buffer
		code := demoworker.Run(&out, func(k string) string { return tc.env[k] })
		var l workerLine
		if err := json.Unmarshal(out.Bytes(), &l); err != nil || code != 1 || l.Error != tc.want || l.Lang != "go" ||
			l.Message == "" || strings.Count(out.String(), "\n") != 1 {
			t.Errorf("env %v: exit %d, output %q", tc.env, code, out.String())
		}
	}
}
