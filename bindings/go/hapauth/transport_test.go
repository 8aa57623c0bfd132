package hapauth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	hap "github.com/hap-oauth/hap/bindings/go"
	"github.com/hap-oauth/hap/bindings/go/hapauth"
	"github.com/hap-oauth/hap/bindings/go/hapauth/internal/testkit"
)

const body = `{"model":"claude-fake","max_tokens":1,"messages":[]}`

type fixture struct {
	srv   *testkit.TokenServer
	api   *testkit.FakeAPI
	scene *testkit.Scene
}

// One fake token server for the package (a Python start per test would
// dominate the run); each test resets it.
var tokenServer *testkit.TokenServer

func TestMain(m *testing.M) {
	srv, stop, err := testkit.LaunchTokenServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tokenServer = srv
	code := m.Run()
	stop()
	os.Exit(code)
}

func setup(t *testing.T) *fixture {
	t.Helper()
	tokenServer.Reset(t)
	return &fixture{srv: tokenServer, api: testkit.StartFakeAPI(t), scene: testkit.NewScene(t, tokenServer)}
}

func (f *fixture) post(t *testing.T, client *http.Client, r io.Reader, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.api.URL+"/v1/messages", r)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

func clientFor(pool *hap.Pool) *http.Client {
	return &http.Client{Transport: &hapauth.Transport{Pool: pool}}
}

func TestExpiredLoginRefreshedOnceWithBearerAndBetaAndNoAPIKey(t *testing.T) {
	f := setup(t)
	f.scene.WriteCreds(t, time.Now().Add(-time.Hour))
	pool := testkit.Open(t, f.scene.Config())
	client := clientFor(pool)

	req, _ := http.NewRequest(http.MethodPost, f.api.URL+"/v1/messages", strings.NewReader(body))
	req.Header.Set("X-Api-Key", "sk-ant-api03-fake-k")
	req.Header.Set("Anthropic-Beta", "a-1, b-2")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if n := f.srv.Posts(t); n != 1 {
		t.Fatalf("%d refresh POSTs, want 1", n)
	}
	got := f.api.Requests()
	if len(got) != 1 {
		t.Fatalf("%d API requests, want 1", len(got))
	}
	r := got[0]
	if r.Bearer != f.scene.CredsAccessToken(t) || r.Bearer == testkit.FixtureAccess {
		t.Errorf("bearer is not the refreshed token")
	}
	if r.XAPIKey {
		t.Error("x-api-key was sent")
	}
	if !r.HasBeta(hapauth.OAuthBeta) || !r.HasBeta("a-1") || !r.HasBeta("b-2") || len(r.Betas) != 3 {
		t.Errorf("betas %v", r.Betas)
	}
	// The caller's request is untouched (RoundTripper contract).
	if req.Header.Get("Authorization") != "" || req.Header.Get("X-Api-Key") == "" || req.Header.Get("Anthropic-Beta") != "a-1, b-2" {
		t.Errorf("the caller's request was modified: %v", req.Header)
	}

	// A beta already present is not added twice; the next call needs no POST.
	f.post(t, client, strings.NewReader(body), http.Header{"Anthropic-Beta": {hapauth.OAuthBeta}})
	if r := f.api.Requests()[1]; len(r.Betas) != 1 {
		t.Errorf("betas %v", r.Betas)
	}
	if n := f.srv.Posts(t); n != 1 {
		t.Fatalf("%d refresh POSTs, want 1", n)
	}
}

func Test401OneRefreshOneRetrySameBody(t *testing.T) {
	f := setup(t)
	f.scene.WriteCreds(t, time.Now().Add(time.Hour))
	pool := testkit.Open(t, f.scene.Config())
	f.api.Reject(testkit.FixtureAccess) // revoked server-side, still valid by its expiry

	res := f.post(t, clientFor(pool), bytes.NewReader([]byte(body)), nil)
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if n := f.srv.Posts(t); n != 1 {
		t.Fatalf("%d refresh POSTs, want 1", n)
	}
	got := f.api.Requests()
	if len(got) != 2 {
		t.Fatalf("%d API requests, want 2", len(got))
	}
	if got[0].Bearer != testkit.FixtureAccess || got[1].Bearer != f.scene.CredsAccessToken(t) {
		t.Errorf("first request must use the old token, the retry the refreshed one")
	}
	if got[1].Body != body {
		t.Errorf("retry body %q", got[1].Body)
	}
	if st := testkit.OnlyStatus(t, pool); st.LastStatus != hap.StateOK {
		t.Errorf("last_status %q", st.LastStatus)
	}
}

func Test401ThatPersistsIsReturnedAfterOneRefreshAndOneRetry(t *testing.T) {
	f := setup(t)
	f.scene.WriteCreds(t, time.Now().Add(time.Hour))
	pool := testkit.Open(t, f.scene.Config())
	f.api.RejectAll()

	res := f.post(t, clientFor(pool), strings.NewReader(body), nil)
	if res.StatusCode != 401 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if n := f.srv.Posts(t); n != 1 {
		t.Fatalf("%d refresh POSTs, want 1", n)
	}
	if got := f.api.Bearers(); len(got) != 2 || got[0] == got[1] {
		t.Fatalf("requests %d", len(got))
	}
	// The refreshed token was refused too: reported, and the credential benched.
	st := testkit.OnlyStatus(t, pool)
	if st.LastStatus != hap.StateExhausted || st.LastErrorCode != 401 {
		t.Errorf("status %q %d", st.LastStatus, st.LastErrorCode)
	}
}

func TestConcurrent401sMakeOneRefreshAndBenchNothing(t *testing.T) {
	f := setup(t)
	f.scene.WriteCreds(t, time.Now().Add(time.Hour))
	pool := testkit.Open(t, f.scene.Config())
	f.api.Reject(testkit.FixtureAccess)
	client := clientFor(pool)

	const n = 16
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := client.Post(f.api.URL+"/v1/messages", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			codes[i] = res.StatusCode
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Errorf("call %d: status %d", i, c)
		}
	}
	if p := f.srv.Posts(t); p != 1 {
		t.Errorf("%d refresh POSTs, want 1", p)
	}
	if st := testkit.OnlyStatus(t, pool); st.LastStatus != hap.StateOK {
		t.Errorf("last_status %q: a late 401 of the old token benched the new one", st.LastStatus)
	}
}

func Test429OnTheOnlyCredentialIsHandedBack(t *testing.T) {
	f := setup(t)
	f.scene.WriteCreds(t, time.Now().Add(time.Hour))
	pool := testkit.Open(t, f.scene.Config())
	f.api.RateLimitAll(http.Header{"Retry-After": {"0"}})

	res := f.post(t, clientFor(pool), strings.NewReader(body), nil)
	if res.StatusCode != 429 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if got := f.api.Requests(); len(got) != 1 {
		t.Fatalf("%d API requests: the Transport retried a 429 with the same credential", len(got))
	}
	if p := f.srv.Posts(t); p != 0 {
		t.Errorf("%d refresh POSTs: a 429 is not a reason to refresh", p)
	}
	if st := testkit.OnlyStatus(t, pool); st.LastErrorCode != 429 {
		t.Errorf("the 429 was not reported: %+v", st)
	}
}

func Test429RetriesOnceWithAnotherCredentialAndPassesTheReset(t *testing.T) {
	f := setup(t)
	f.scene.WritePoolRows(t, "aaaaaa", "bbbbbb")
	cfg := f.scene.Config()
	cfg.CredentialsPath, cfg.NoCredentialsFile = "", true
	pool := testkit.Open(t, cfg)
	reset := time.Now().Add(15 * time.Minute).Truncate(time.Second)
	f.api.RateLimit(testkit.RowToken("aaaaaa"), http.Header{
		"Retry-After":                       {"30"},
		"Anthropic-Ratelimit-Unified-Reset": {strconv.FormatInt(reset.Unix(), 10)},
	})

	res := f.post(t, clientFor(pool), strings.NewReader(body), nil)
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	got := f.api.Bearers()
	if len(got) != 2 || got[0] != testkit.RowToken("aaaaaa") || got[1] != testkit.RowToken("bbbbbb") {
		t.Fatalf("bearers %d, want aaaaaa then bbbbbb", len(got))
	}
	a := testkit.StatusOf(t, pool, "aaaaaa")
	if a.LastStatus != hap.StateExhausted || !a.AvailableAt.Equal(reset) {
		t.Errorf("aaaaaa: %q until %v, want exhausted until %v", a.LastStatus, a.AvailableAt, reset)
	}
	if b := testkit.StatusOf(t, pool, "bbbbbb"); b.LastStatus != "" {
		t.Errorf("bbbbbb: %q", b.LastStatus)
	}
}

// onceReader is a body without GetBody: it can be sent only once.
type onceReader struct {
	io.Reader
	closed bool
}

func (r *onceReader) Close() error { r.closed = true; return nil }

func TestBodyWithoutGetBodyIsReportedButNotSentTwice(t *testing.T) {
	f := setup(t)
	f.scene.WriteCreds(t, time.Now().Add(time.Hour))
	pool := testkit.Open(t, f.scene.Config())
	f.api.Reject(testkit.FixtureAccess)

	res := f.post(t, clientFor(pool), &onceReader{Reader: strings.NewReader(body)}, nil)
	if res.StatusCode != 401 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if got := f.api.Requests(); len(got) != 1 {
		t.Fatalf("%d API requests, want 1", len(got))
	}
	// Reported: the next resolve refreshes instead of serving the refused token.
	if st := testkit.OnlyStatus(t, pool); st.LastStatus != hap.StateRefreshPending {
		t.Errorf("last_status %q", st.LastStatus)
	}
	if p := f.srv.Posts(t); p != 0 {
		t.Errorf("%d POSTs", p)
	}
	if res := f.post(t, clientFor(pool), strings.NewReader(body), nil); res.StatusCode != 200 || f.srv.Posts(t) != 1 {
		t.Errorf("next call: %d after %d POSTs", res.StatusCode, f.srv.Posts(t))
	}
}

func TestNoCredentialSendsNothingAndClosesTheBody(t *testing.T) {
	f := setup(t)
	pool := testkit.Open(t, f.scene.Config()) // no credentials file, no pool file
	rb := &onceReader{Reader: strings.NewReader(body)}
	req, _ := http.NewRequest(http.MethodPost, f.api.URL+"/v1/messages", rb)
	_, err := clientFor(pool).Do(req)
	if !errors.Is(err, hap.ErrNoCredential) {
		t.Fatalf("err = %v, want hap.ErrNoCredential", err)
	}
	if len(f.api.Requests()) != 0 {
		t.Error("a request was sent")
	}
	if !rb.closed {
		t.Error("request body not closed")
	}
	if strings.Contains(err.Error(), "sk-ant-") {
		t.Errorf("error leaks a token: %v", err)
	}
}

func TestContextEndsTheWaitForARefresh(t *testing.T) {
	f := setup(t)
	f.scene.WriteCreds(t, time.Now().Add(-time.Hour))
	pool := testkit.Open(t, f.scene.Config())
	f.srv.Script(t, map[string]any{"delay_ms": 2000})

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.api.URL+"/v1/messages", strings.NewReader(body))
	start := time.Now()
	_, err := clientFor(pool).Do(req)
	waited := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	// The refresh takes 2 s; the caller's deadline, not the refresh, ends the call.
	if waited > 1500*time.Millisecond {
		t.Errorf("RoundTrip returned after %v, not at its context's deadline", waited)
	}
	if len(f.api.Requests()) != 0 {
		t.Error("a request was sent")
	}
}

func TestNilPoolIsAClearError(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:9/", nil)
	_, err := (&hapauth.Transport{}).RoundTrip(req)
	if err == nil || !strings.Contains(err.Error(), "Pool is nil") {
		t.Fatalf("err = %v", err)
	}
}

func TestRedirectToAnotherHostCarriesNoToken(t *testing.T) {
	f := setup(t)
	f.scene.WriteCreds(t, time.Now().Add(time.Hour))
	pool := testkit.Open(t, f.scene.Config())
	var mu sync.Mutex
	seen := map[string][]string{} // server -> Authorization of each request
	record := func(name string, r *http.Request) {
		mu.Lock()
		seen[name] = append(seen[name], r.Header.Get("Authorization"))
		mu.Unlock()
	}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { record("other", r) }))
	defer other.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("api", r)
		http.Redirect(w, r, other.URL+"/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()

	res, err := clientFor(pool).Post(redirector.URL+"/v1/messages", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if got := seen["api"]; len(got) != 1 || got[0] != "Bearer "+testkit.FixtureAccess {
		t.Fatalf("the API host did not get the token")
	}
	if got := seen["other"]; len(got) != 1 || got[0] != "" {
		t.Errorf("the redirect target got Authorization (%d requests)", len(got))
	}
}
