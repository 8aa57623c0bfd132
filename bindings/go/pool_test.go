package hap_test

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	hap "github.com/hap-oauth/hap/bindings/go"
)

func TestVersionMatchesHeader(t *testing.T) {
	if err := hap.CheckABI(); err != nil {
		t.Fatal(err)
	}
	major, minor := hap.ABIVersion()
	hmajor, hminor := hap.HeaderABIVersion()
	if major != hmajor || minor < hminor {
		t.Fatalf("library ABI %d.%d, header %d.%d", major, minor, hmajor, hminor)
	}
	if v := hap.Version(); !strings.HasPrefix(v, "hap ") {
		t.Fatalf("Version() = %q", v)
	}
}

// The Go constants must name the same statuses as the library.
func TestCodeNamesMatchLibrary(t *testing.T) {
	for code, name := range map[hap.Code]string{
		hap.CodeOK:                "HAP_STATUS_OK",
		hap.CodeInvalidArgument:   "HAP_STATUS_INVALID_ARGUMENT",
		hap.CodeNoCredential:      "HAP_STATUS_NO_CREDENTIAL",
		hap.CodeReauthRequired:    "HAP_STATUS_REAUTH_REQUIRED",
		hap.CodeUnavailable:       "HAP_STATUS_UNAVAILABLE",
		hap.CodeLockTimeout:       "HAP_STATUS_LOCK_TIMEOUT",
		hap.CodeStoreCorrupt:      "HAP_STATUS_STORE_CORRUPT",
		hap.CodeIO:                "HAP_STATUS_IO",
		hap.CodeUnknownCredential: "HAP_STATUS_UNKNOWN_CREDENTIAL",
		hap.CodeInternal:          "HAP_STATUS_INTERNAL",
		hap.Code(42):              "HAP_STATUS_UNKNOWN",
	} {
		if got := code.String(); got != name {
			t.Errorf("Code(%d).String() = %q, want %q", int32(code), got, name)
		}
	}
}

func TestResolveValidTokenPostsNothing(t *testing.T) {
	srv := startServer(t)
	e := newEnv(t, srv)
	exp := fresh()
	e.writeCreds(t, exp)
	p := e.open(t, e.config())

	tok, err := p.ResolveToken(hap.ResolveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken() != fixtureAccess || tok.Refreshed || tok.Source != "claude_code" ||
		tok.CredentialID == "" || tok.ExpiresAt.UnixMilli() != exp.UnixMilli() {
		t.Fatalf("got %v (secret matches: %t)", tok, tok.AccessToken() == fixtureAccess)
	}
	if n := srv.stats(t).Posts; n != 0 {
		t.Fatalf("%d POSTs for a valid token", n)
	}
}

// An expired token is refreshed once, written back into Claude Code's file
// without losing its other keys, and then served from the store.
func TestResolveExpiredRefreshesAndWritesBack(t *testing.T) {
	srv := startServer(t)
	e := newEnv(t, srv)
	e.writeCreds(t, expired())
	p := e.open(t, e.config())

	tok, err := p.ResolveToken(hap.ResolveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Refreshed || tok.AccessToken() == fixtureAccess || !strings.HasPrefix(tok.AccessToken(), "sk-ant-oat01-fake-") {
		t.Fatalf("expected a refreshed token, got %v", tok)
	}
	if time.Until(tok.ExpiresAt) < 50*time.Minute {
		t.Fatalf("ExpiresAt %v is not about an hour ahead", tok.ExpiresAt)
	}
	if n := srv.stats(t).Posts; n != 1 {
		t.Fatalf("%d POSTs, want 1", n)
	}

	doc := e.readCreds(t)
	oauth := doc["claudeAiOauth"].(map[string]any)
	if oauth["accessToken"] != tok.AccessToken() || oauth["refreshToken"] == fixtureRefresh {
		t.Fatal("credentials file does not hold the new pair")
	}
	if oauth["subscriptionType"] != "max" || oauth["rateLimitTier"] != "default_claude_max_20x" {
		t.Fatalf("write-back lost Claude Code's keys: %v", oauth)
	}
	if other, _ := doc["otherTool"].(map[string]any); other["keep"] != true {
		t.Fatal("write-back lost a top-level key")
	}
	pool, err := os.ReadFile(e.poolPath)
	if err != nil {
		t.Fatalf("pool file not written: %v", err)
	}
	noSecret(t, "pool file (a borrowed row holds no token)", string(pool))

	again, err := p.ResolveToken(hap.ResolveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.AccessToken() != tok.AccessToken() || again.Refreshed {
		t.Fatalf("second resolve: %v", again)
	}
	st, err := p.Status()
	if err != nil {
		t.Fatal(err)
	}
	noSecret(t, "status JSON", string(st.Raw))
	if st.Counters.RefreshPosts != 1 || len(st.Credentials) != 1 || st.Credentials[0].CredentialID != tok.CredentialID ||
		st.CredentialsPath != e.credsPath || st.PoolPath != e.poolPath {
		t.Fatalf("status: %+v", st)
	}
	if n := srv.stats(t).Posts; n != 1 {
		t.Fatalf("%d POSTs after the second resolve, want 1", n)
	}
}

func TestThirtyTwoGoroutinesOnePost(t *testing.T) {
	srv := startServer(t)
	e := newEnv(t, srv)
	e.writeCreds(t, expired())
	p := e.open(t, e.config())

	const n = 32
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		toks  = make([]hap.Token, n)
		errs  = make([]error, n)
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			toks[i], errs[i] = p.ResolveToken(hap.ResolveOptions{})
		}(i)
	}
	close(start)
	wg.Wait()

	refreshed := 0
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if toks[i].AccessToken() != toks[0].AccessToken() {
			t.Fatalf("goroutines got different tokens")
		}
		if toks[i].Refreshed {
			refreshed++
		}
	}
	if toks[0].AccessToken() == fixtureAccess {
		t.Fatal("the expired token was returned")
	}
	if posts := srv.stats(t).Posts; posts != 1 || refreshed != 1 {
		t.Fatalf("%d POSTs and %d tokens marked refreshed, want 1 and 1", posts, refreshed)
	}
}

// Close while goroutines call: every call either works or sees ErrClosed,
// Close waits for those in flight, and the race detector stays quiet.
func TestCloseWhileCalling(t *testing.T) {
	e := newEnv(t, nil)
	e.writeCreds(t, fresh())
	p, err := hap.Open(e.config())
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok, shut int
	)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for {
				var err error
				if i%2 == 0 {
					_, err = p.ResolveToken(hap.ResolveOptions{})
				} else {
					_, err = p.Status()
				}
				mu.Lock()
				if err == nil {
					ok++
				} else {
					shut++
				}
				mu.Unlock()
				if errors.Is(err, hap.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("call failed with %v, want nil or ErrClosed", err)
					return
				}
			}
		}(i)
	}
	time.Sleep(100 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if ok == 0 || shut != 8 {
		t.Fatalf("%d calls worked, %d saw ErrClosed; want >0 and 8", ok, shut)
	}
	if _, err := p.ReportFailure(hap.Failure{CredentialID: "abc123", StatusCode: 429}); !errors.Is(err, hap.ErrClosed) {
		t.Fatalf("ReportFailure after Close: %v", err)
	}
	var nilPool *hap.Pool
	if _, err := nilPool.ResolveToken(hap.ResolveOptions{}); !errors.Is(err, hap.ErrClosed) {
		t.Fatalf("nil pool: %v", err)
	}
}

// Close issued while a call is blocked inside libhap (waiting for a lock that
// another process holds) waits for that call instead of freeing the handle
// under it.
func TestCloseWaitsForBlockedCall(t *testing.T) {
	e := newEnv(t, nil)
	e.writeCreds(t, expired())
	unlock := holdCredentialsLock(t, e)
	defer unlock()
	cfg := e.config()
	cfg.LockTimeout = 600 * time.Millisecond
	p, err := hap.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}

	resolved := make(chan error, 1)
	go func() {
		_, err := p.ResolveToken(hap.ResolveOptions{})
		resolved <- err
	}()
	time.Sleep(150 * time.Millisecond) // the resolve is now waiting for the lock
	closeStart := time.Now()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// The resolve gives up at LockTimeout (600 ms after it began); a Close
	// that did not wait for it would return at once.
	if waited := time.Since(closeStart); waited < 300*time.Millisecond {
		t.Fatalf("Close returned after %v, while the resolve was still blocked", waited)
	}
	select {
	case err := <-resolved:
		if !errors.Is(err, hap.ErrLockTimeout) {
			t.Fatalf("blocked resolve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocked resolve never returned")
	}
	if _, err := p.ResolveToken(hap.ResolveOptions{}); !errors.Is(err, hap.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestReportFailureBenchesUntilAvailable(t *testing.T) {
	srv := startServer(t)
	e := newEnv(t, srv)
	e.writeCreds(t, fresh())
	p := e.open(t, e.config())
	tok, err := p.ResolveToken(hap.ResolveOptions{})
	if err != nil {
		t.Fatal(err)
	}

	res, err := p.ReportFailure(hap.Failure{
		CredentialID: tok.CredentialID, StatusCode: 429, Reason: "rate_limit_error",
		ResetAt: time.Now().Add(30 * time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.CredentialID != tok.CredentialID || res.LastStatus != hap.StateExhausted ||
		!res.AvailableAt.After(time.Now()) || res.AvailableAt.After(time.Now().Add(31*time.Minute)) {
		t.Fatalf("ReportFailure: %+v", res)
	}
	st, err := p.Status()
	if err != nil {
		t.Fatal(err)
	}
	c := st.Credentials[0]
	if c.LastStatus != hap.StateExhausted || c.Available || c.LastErrorCode != 429 || c.AvailableAt.IsZero() {
		t.Fatalf("status after a 429: %+v", c)
	}

	_, err = p.ResolveToken(hap.ResolveOptions{})
	var he *hap.Error
	if !errors.Is(err, hap.ErrNoCredential) || !errors.As(err, &he) || he.RetryAt.IsZero() {
		t.Fatalf("resolve while benched: %v", err)
	}
	noSecret(t, "error", err.Error())

	// The optional keys go out in the types the library expects.
	res, err = p.ReportFailure(hap.Failure{CredentialID: tok.CredentialID, StatusCode: 529,
		Reason: "overloaded_error", Message: "Overloaded", RetryAfter: 90 * time.Second})
	if err != nil || res.LastStatus != hap.StateExhausted {
		t.Fatalf("ReportFailure with RetryAfter: %+v, %v", res, err)
	}
}

// PoolStatus and CredentialSnapshot are the names every binding shares
// (docs/GLOSSARY.md); Status and CredentialStatus stay as deprecated aliases of
// the same types. Every key of the status document reaches a field.
func TestPoolStatusNamesAndEveryKey(t *testing.T) {
	srv := startServer(t)
	e := newEnv(t, srv)
	e.writeCreds(t, fresh())
	p := e.open(t, e.config())
	if _, err := p.ResolveToken(hap.ResolveOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := p.Status()
	if err != nil {
		t.Fatal(err)
	}
	var snapshot hap.PoolStatus = st
	var former hap.Status = snapshot
	if len(former.Credentials) != 1 {
		t.Fatalf("status: %+v", former)
	}
	var c hap.CredentialSnapshot = st.Credentials[0]
	var formerC hap.CredentialStatus = c
	var raw struct {
		Credentials []struct {
			HasToken bool `json:"has_token"`
		} `json:"credentials"`
		Counters map[string]int64 `json:"counters"`
	}
	if err := json.Unmarshal(st.Raw, &raw); err != nil {
		t.Fatal(err)
	}
	if !formerC.HasToken || formerC.HasToken != raw.Credentials[0].HasToken {
		t.Fatalf("HasToken %v, JSON has_token %v", formerC.HasToken, raw.Credentials[0].HasToken)
	}
	got := map[string]int64{
		"resolves":           st.Counters.Resolves,
		"refresh_posts":      st.Counters.RefreshPosts,
		"refresh_adopted":    st.Counters.RefreshAdopted,
		"journal_recoveries": st.Counters.JournalRecoveries,
		"lock_waits":         st.Counters.LockWaits,
		"store_reads":        st.Counters.StoreReads,
		"store_writes":       st.Counters.StoreWrites,
	}
	for k, v := range raw.Counters {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("counter %s: JSON %d, Counters field %d (known: %v)", k, v, g, ok)
		}
	}
	// Adopting the Claude Code login wrote the pool file; opening read the stores.
	if st.Counters.StoreWrites < 1 || st.Counters.StoreReads < 1 {
		t.Fatalf("counters: %+v", st.Counters)
	}
}

func TestConfigJSON(t *testing.T) {
	b, err := json.Marshal(hap.Config{})
	if err != nil || string(b) != "{}" {
		t.Fatalf("zero Config marshals to %s, %v", b, err)
	}
	cfg := hap.Config{
		NoPoolFile:               true,
		CredentialsPath:          "/c/.credentials.json",
		TokenURLs:                []string{"http://127.0.0.1:1/t"},
		Strategy:                 hap.RoundRobin,
		LockTimeout:              1500 * time.Microsecond, // rounds up to 2 ms
		DisableExternalLogins:    true,
		DeferRefreshToClaudeCode: true,
		CredentialsStore:         hap.CredentialsKeychain,
		SecurityProgram:          "/opt/fake-security",
	}
	b, err = json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"adopt_external_logins":false,"credentials_path":"/c/.credentials.json","credentials_store":"keychain","defer_refresh_to_claude_code":true,"lock_timeout_ms":2,"pool_path":null,"security_program":"/opt/fake-security","strategy":"round_robin","token_urls":["http://127.0.0.1:1/t"]}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var back hap.Config
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if b2, _ := json.Marshal(back); string(b2) != want {
		t.Fatalf("round trip: %s", b2)
	}
	if err := json.Unmarshal([]byte(`{"pool_paht": "/x"}`), &back); !errors.Is(err, hap.ErrInvalidArgument) || !strings.Contains(err.Error(), "pool_paht") {
		t.Fatalf("unknown key: %v", err)
	}
	_, err = hap.Open(hap.Config{PoolPath: "/x/auth.json", NoPoolFile: true})
	if !errors.Is(err, hap.ErrInvalidArgument) {
		t.Fatalf("PoolPath with NoPoolFile: %v", err)
	}
}

func TestTokenNeverPrinted(t *testing.T) {
	e := newEnv(t, nil)
	e.writeCreds(t, fresh())
	p := e.open(t, e.config())
	tok, err := p.ResolveToken(hap.ResolveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken() != fixtureAccess {
		t.Fatal("wrong token")
	}
	type exported struct{ Tok hap.Token }
	type unexported struct{ tok hap.Token }
	type pointer struct{ tok *hap.Token }
	js, _ := json.Marshal(tok)
	for name, s := range map[string]string{
		"String":               tok.String(),
		"%v":                   fmtS("%v", tok),
		"%+v":                  fmtS("%+v", tok),
		"%#v":                  fmtS("%#v", tok),
		"%s":                   fmtS("%s", tok),
		"%q":                   fmtS("%q", tok),
		"%x":                   fmtS("%x", tok),
		"%v pointer":           fmtS("%v", &tok),
		"Sprint":               fmtS("", tok),
		"struct %+v":           fmtS("%+v", exported{tok}),
		"unexported field %+v": fmtS("%+v", unexported{tok}),
		"unexported field %#v": fmtS("%#v", unexported{tok}),
		"pointer field %+v":    fmtS("%+v", pointer{&tok}),
		"slice %v":             fmtS("%v", []hap.Token{tok}),
		"map %v":               fmtS("%v", map[string]hap.Token{"k": tok}),
		"json":                 string(js),
	} {
		noSecret(t, name, s)
		if strings.Contains(s, "fake-a1") {
			t.Errorf("%s leaks the token: %s", name, s)
		}
	}
	if !strings.Contains(tok.String(), tok.CredentialID) || !strings.Contains(tok.String(), "<redacted>") {
		t.Fatalf("String() = %s", tok.String())
	}
}
