package hap_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	hap "github.com/hap-oauth/hap/bindings/go"
	"github.com/hap-oauth/hap/bindings/go/internal/demoworker"
)

// The fixture tokens are short on purpose (a commit hook flags long ones).
const (
	fixtureAccess  = "sk-ant-oat01-fake-a1"
	fixtureRefresh = "sk-ant-ort01-fake-r1"
)

// anyToken matches every token the fixtures or the fake server produce.
var anyToken = regexp.MustCompile(`sk-ant-(oat|ort)01-`)

// TestMain doubles as the demo worker: the multi-process test re-executes
// this test binary with HAP_GO_TEST_ROLE=demo-worker.
func TestMain(m *testing.M) {
	if os.Getenv("HAP_GO_TEST_ROLE") == "demo-worker" {
		os.Exit(demoworker.Run(os.Stdout, os.Getenv))
	}
	os.Exit(m.Run())
}

// fakeServer is the repo's testing/fake_token_server.py, one per test.
type fakeServer struct {
	base string
}

func (s *fakeServer) tokenURL() string { return s.base + "/v1/oauth/token" }

func startServer(t testing.TB) *fakeServer {
	t.Helper()
	script := os.Getenv("HAP_FAKE_SERVER")
	if script == "" {
		script = filepath.Join("..", "..", "testing", "fake_token_server.py")
	}
	cmd := exec.Command("python3", script, "--port", "0", "--exit-on-stdin-eof")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start fake token server: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(l)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case base := <-line:
		if !strings.HasPrefix(base, "http://127.0.0.1:") {
			t.Fatalf("fake token server printed %q", base)
		}
		return &fakeServer{base: base}
	case <-time.After(15 * time.Second):
		t.Fatal("fake token server did not print its URL")
	}
	return nil
}

type serverStats struct {
	Posts        int `json:"posts"`
	Issued       int `json:"issued"`
	InvalidGrant int `json:"invalid_grant"`
}

func (s *fakeServer) stats(t testing.TB) serverStats {
	t.Helper()
	resp, err := http.Get(s.base + "/_admin/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st serverStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func (s *fakeServer) admin(t testing.TB, path string, body any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(s.base+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %s", path, resp.Status)
	}
}

// env is one machine's worth of stores in a temp dir.
type env struct {
	dir       string
	poolPath  string // <dir>/hermes/auth.json (not created: hap creates it)
	credsPath string // <dir>/claude/.credentials.json
	srv       *fakeServer
}

func newEnv(t testing.TB, srv *fakeServer) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{
		dir:       dir,
		poolPath:  filepath.Join(dir, "hermes", "auth.json"),
		credsPath: filepath.Join(dir, "claude", ".credentials.json"),
		srv:       srv,
	}
	if err := os.MkdirAll(filepath.Dir(e.credsPath), 0o700); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) config() hap.Config {
	url := "http://127.0.0.1:9/v1/oauth/token" // discard port: nothing listens
	if e.srv != nil {
		url = e.srv.tokenURL()
	}
	return hap.Config{
		PoolPath:        e.poolPath,
		CredentialsPath: e.credsPath,
		TokenURLs:       []string{url},
		LockTimeout:     10 * time.Second,
		HTTPTimeout:     5 * time.Second,
	}
}

// writeCreds writes Claude Code's credentials file with the fixture pair.
func (e *env) writeCreds(t testing.TB, expiresAt time.Time) []byte {
	t.Helper()
	doc := map[string]any{
		"claudeAiOauth": map[string]any{
			"accessToken":      fixtureAccess,
			"refreshToken":     fixtureRefresh,
			"expiresAt":        expiresAt.UnixMilli(),
			"scopes":           []string{"user:inference"},
			"subscriptionType": "max",
			"rateLimitTier":    "default_claude_max_20x",
		},
		"otherTool": map[string]any{"keep": true},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.credsPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) readCreds(t testing.TB) map[string]any {
	t.Helper()
	b, err := os.ReadFile(e.credsPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("credentials file is not JSON after the call: %v", err)
	}
	return doc
}

func (e *env) open(t testing.TB, cfg hap.Config) *hap.Pool {
	t.Helper()
	p, err := hap.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func expired() time.Time { return time.Now().Add(-time.Hour) }
func fresh() time.Time   { return time.Now().Add(time.Hour) }

// noSecret fails when s holds anything that looks like a token.
func noSecret(t testing.TB, what, s string) {
	t.Helper()
	if anyToken.MatchString(s) {
		t.Errorf("%s leaks a token: %s", what, s)
	}
}

func fmtS(format string, v any) string {
	if format == "" {
		return fmt.Sprint(v)
	}
	return fmt.Sprintf(format, v)
}

// holdCredentialsLock takes the credentials file's flock as another process
// (Hermes) would, until the returned function runs.
func holdCredentialsLock(t testing.TB, e *env) func() {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(filepath.Dir(e.credsPath), ".credentials.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return func() { f.Close() }
}
