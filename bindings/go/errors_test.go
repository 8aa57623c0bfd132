package hap_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	hap "github.com/hap-oauth/hap/bindings/go"
)

var allSentinels = map[hap.Code]error{
	hap.CodeInvalidArgument:   hap.ErrInvalidArgument,
	hap.CodeNoCredential:      hap.ErrNoCredential,
	hap.CodeReauthRequired:    hap.ErrReauthRequired,
	hap.CodeUnavailable:       hap.ErrUnavailable,
	hap.CodeLockTimeout:       hap.ErrLockTimeout,
	hap.CodeStoreCorrupt:      hap.ErrStoreCorrupt,
	hap.CodeIO:                hap.ErrIO,
	hap.CodeUnknownCredential: hap.ErrUnknownCredential,
	hap.CodeInternal:          hap.ErrInternal,
}

// checkStatus asserts err is the library's *Error for want, matched by its own
// sentinel and by no other, and that no rendering of it carries a token.
func checkStatus(t *testing.T, err error, want hap.Code) *hap.Error {
	t.Helper()
	var he *hap.Error
	if !errors.As(err, &he) {
		t.Fatalf("want *hap.Error %v, got %T %v", want, err, err)
	}
	if he.Status != want || he.Name != want.String() || he.Message == "" {
		t.Fatalf("want %v, got status %d name %q message %q", want, he.Status, he.Name, he.Message)
	}
	for code, s := range allSentinels {
		if errors.Is(err, s) != (code == want) {
			t.Errorf("errors.Is(err, %v) = %t", s, code != want)
		}
	}
	for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		noSecret(t, "error", s)
	}
	return he
}

// openAndResolve does what an application does; a status may come from either
// step (Open reads what exists, resolve does the rest).
func openAndResolve(t *testing.T, cfg hap.Config) error {
	t.Helper()
	p, err := hap.Open(cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	_, err = p.ResolveToken(hap.ResolveOptions{})
	return err
}

// Every status the library can be driven to from outside, through the real
// libhap and the fake server. (INTERNAL, a caught panic, is mapped in
// errors_internal_test.go.)
func TestStatusesMapToErrors(t *testing.T) {
	srv := startServer(t)

	t.Run("invalid argument", func(t *testing.T) {
		e := newEnv(t, srv)
		cfg := e.config()
		cfg.PoolPath = "relative/auth.json"
		_, err := hap.Open(cfg)
		checkStatus(t, err, hap.CodeInvalidArgument)
	})

	t.Run("no credential", func(t *testing.T) {
		e := newEnv(t, srv)
		cfg := e.config()
		cfg.NoPoolFile = true
		cfg.PoolPath = ""
		checkStatus(t, openAndResolve(t, cfg), hap.CodeNoCredential)
	})

	t.Run("reauth required", func(t *testing.T) {
		e := newEnv(t, srv)
		before := e.writeCreds(t, expired())
		srv.admin(t, "/_admin/revoke", map[string]any{"all": true})
		t.Cleanup(func() { srv.admin(t, "/_admin/reset", map[string]any{}) })
		checkStatus(t, openAndResolve(t, e.config()), hap.CodeReauthRequired)
		if after, _ := os.ReadFile(e.credsPath); !bytes.Equal(before, after) {
			t.Fatal("credentials file changed on the invalid_grant path")
		}
	})

	t.Run("unavailable", func(t *testing.T) {
		e := newEnv(t, srv)
		e.writeCreds(t, expired())
		srv.admin(t, "/_admin/script", map[string]any{"faults": []any{map[string]any{"status": 503}}})
		he := checkStatus(t, openAndResolve(t, e.config()), hap.CodeUnavailable)
		if !he.RetryAt.After(time.Now().Add(-time.Second)) {
			t.Fatalf("RetryAt = %v", he.RetryAt)
		}
	})

	t.Run("lock timeout", func(t *testing.T) {
		e := newEnv(t, srv)
		e.writeCreds(t, expired())
		defer holdCredentialsLock(t, e)()
		cfg := e.config()
		cfg.LockTimeout = 300 * time.Millisecond
		checkStatus(t, openAndResolve(t, cfg), hap.CodeLockTimeout)
	})

	t.Run("store corrupt", func(t *testing.T) {
		e := newEnv(t, srv)
		garbage := []byte(`{"claudeAiOauth": {"accessToken": `)
		if err := os.WriteFile(e.credsPath, garbage, 0o600); err != nil {
			t.Fatal(err)
		}
		he := checkStatus(t, openAndResolve(t, e.config()), hap.CodeStoreCorrupt)
		if he.Path != e.credsPath {
			t.Fatalf("Path = %q, want %q", he.Path, e.credsPath)
		}
		if after, _ := os.ReadFile(e.credsPath); !bytes.Equal(garbage, after) {
			t.Fatal("a corrupt store was rewritten")
		}
	})

	t.Run("io", func(t *testing.T) {
		e := newEnv(t, srv)
		if err := os.Mkdir(e.credsPath, 0o700); err != nil { // a directory where the file should be
			t.Fatal(err)
		}
		he := checkStatus(t, openAndResolve(t, e.config()), hap.CodeIO)
		if he.Path == "" {
			t.Fatal("IO error without a path")
		}
	})

	t.Run("unknown credential", func(t *testing.T) {
		e := newEnv(t, srv)
		e.writeCreds(t, fresh())
		p := e.open(t, e.config())
		_, err := p.ReportFailure(hap.Failure{CredentialID: "ffffff", StatusCode: 429})
		checkStatus(t, err, hap.CodeUnknownCredential)
	})
}
