// Package testkit is the scaffolding of hapauth's tests and of the SDK recipe
// module (hapauth/sdktest): the repository's real fake token server
// (testing/fake_token_server.py) as a child process, store files in temp dirs,
// and a fake Anthropic Messages API: a real HTTP server on 127.0.0.1.
package testkit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	hap "github.com/hap-oauth/hap/bindings/go"
)

// Short fake tokens only (a commit hook flags long sk-ant-* strings).
const (
	FixtureAccess  = "sk-ant-oat01-fake-a1"
	FixtureRefresh = "sk-ant-ort01-fake-r1"
)

// TokenServer is testing/fake_token_server.py, one per test.
type TokenServer struct{ Base string }

// TokenURL is the server's token endpoint.
func (s *TokenServer) TokenURL() string { return s.Base + "/v1/oauth/token" }

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0) // <root>/bindings/go/hapauth/internal/testkit/testkit.go
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "..")
}

// StartTokenServer starts the fake token server; it stops with the test.
func StartTokenServer(t testing.TB) *TokenServer {
	t.Helper()
	s, stop, err := LaunchTokenServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return s
}

// LaunchTokenServer starts the fake token server for a whole test binary
// (TestMain): one Python start instead of one per test. Call Reset between
// tests and stop at the end.
func LaunchTokenServer() (*TokenServer, func(), error) {
	script := os.Getenv("HAP_FAKE_SERVER")
	if script == "" {
		script = filepath.Join(repoRoot(), "testing", "fake_token_server.py")
	}
	cmd := exec.Command("python3", script, "--port", "0", "--exit-on-stdin-eof")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start fake token server: %w", err)
	}
	stop := func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(l)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case base := <-line:
		if !strings.HasPrefix(base, "http://127.0.0.1:") {
			stop()
			return nil, nil, fmt.Errorf("fake token server printed %q", base)
		}
		return &TokenServer{Base: base}, stop, nil
	case <-time.After(15 * time.Second):
		stop()
		return nil, nil, errors.New("fake token server did not print its URL")
	}
}

// Reset clears the server's counters, script and spent tokens.
func (s *TokenServer) Reset(t testing.TB) {
	t.Helper()
	s.admin(t, "/_admin/reset", map[string]any{})
}

// Posts is the number of POSTs the token endpoint has seen.
func (s *TokenServer) Posts(t testing.TB) int {
	t.Helper()
	resp, err := http.Get(s.Base + "/_admin/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Posts int `json:"posts"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st.Posts
}

// Script queues faults for the next token-endpoint POSTs (testing/README.md).
func (s *TokenServer) Script(t testing.TB, faults ...map[string]any) {
	t.Helper()
	s.admin(t, "/_admin/script", map[string]any{"faults": faults})
}

func (s *TokenServer) admin(t testing.TB, path string, body any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(s.Base+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s", path, resp.Status)
	}
}

// Scene is one machine's stores in a temp dir: <dir>/claude/.credentials.json
// (Claude Code) and <dir>/hermes/auth.json (the pool file, made by hap).
type Scene struct {
	Dir, PoolPath, CredsPath string
	srv                      *TokenServer
}

// NewScene makes the directories; WriteCreds/WritePool fill them.
func NewScene(t testing.TB, srv *TokenServer) *Scene {
	t.Helper()
	dir := t.TempDir()
	s := &Scene{
		Dir:       dir,
		PoolPath:  filepath.Join(dir, "hermes", "auth.json"),
		CredsPath: filepath.Join(dir, "claude", ".credentials.json"),
		srv:       srv,
	}
	for _, p := range []string{s.PoolPath, s.CredsPath} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// Config points a pool at the scene's files and the fake token server.
func (s *Scene) Config() hap.Config {
	return hap.Config{
		PoolPath:        s.PoolPath,
		CredentialsPath: s.CredsPath,
		TokenURLs:       []string{s.srv.TokenURL()},
		LockTimeout:     10 * time.Second,
		HTTPTimeout:     5 * time.Second,
	}
}

// Open opens a pool on cfg, closed with the test.
func Open(t testing.TB, cfg hap.Config) *hap.Pool {
	t.Helper()
	p, err := hap.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// WriteCreds writes Claude Code's credentials file with the fixture pair.
func (s *Scene) WriteCreds(t testing.TB, expiresAt time.Time) {
	t.Helper()
	writeJSON(t, s.CredsPath, map[string]any{
		"claudeAiOauth": map[string]any{
			"accessToken":      FixtureAccess,
			"refreshToken":     FixtureRefresh,
			"expiresAt":        expiresAt.UnixMilli(),
			"scopes":           []string{"user:inference"},
			"subscriptionType": "max",
			"rateLimitTier":    "default_claude_max_20x",
		},
	})
}

// CredsAccessToken is the access token the credentials file holds now.
func (s *Scene) CredsAccessToken(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(s.CredsPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OAuth struct {
			AccessToken string `json:"accessToken"`
		} `json:"claudeAiOauth"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.OAuth.AccessToken
}

// WritePoolRows writes a pool file whose rows own their tokens ("manual"
// rows), one per id, priority in the given order, all valid for an hour; the
// access token of row id is "sk-ant-oat01-fake-<id>".
func (s *Scene) WritePoolRows(t testing.TB, ids ...string) {
	t.Helper()
	var rows []map[string]any
	for i, id := range ids {
		rows = append(rows, map[string]any{
			"id": id, "label": id, "auth_type": "oauth", "priority": i, "source": "manual",
			"access_token":  RowToken(id),
			"refresh_token": "sk-ant-ort01-fake-" + id,
			"expires_at_ms": time.Now().Add(time.Hour).UnixMilli(),
		})
	}
	writeJSON(t, s.PoolPath, map[string]any{"credential_pool": map[string]any{"anthropic": rows}})
}

// RowToken is the access token WritePoolRows gives row id.
func RowToken(id string) string { return "sk-ant-oat01-fake-" + id }

func writeJSON(t testing.TB, path string, doc any) {
	t.Helper()
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// StatusOf is the pool's status row of credential id.
func StatusOf(t testing.TB, p *hap.Pool, id string) hap.CredentialSnapshot {
	t.Helper()
	st, err := p.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Credentials {
		if c.CredentialID == id {
			return c
		}
	}
	t.Fatalf("no credential %s in status", id)
	return hap.CredentialSnapshot{}
}

// OnlyStatus is the status row of a pool's only credential.
func OnlyStatus(t testing.TB, p *hap.Pool) hap.CredentialSnapshot {
	t.Helper()
	st, err := p.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Credentials) != 1 {
		t.Fatalf("%d credentials, want 1", len(st.Credentials))
	}
	return st.Credentials[0]
}
