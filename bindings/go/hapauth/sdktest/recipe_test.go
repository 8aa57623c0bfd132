package sdktest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	hap "github.com/hap-oauth/hap/bindings/go"
	"github.com/hap-oauth/hap/bindings/go/hapauth"
	"github.com/hap-oauth/hap/bindings/go/hapauth/internal/testkit"
)

// newClient is the README's recipe, plus the test's base URL and retry budget.
func newClient(pool *hap.Pool, baseURL string, maxRetries int) anthropic.Client {
	return anthropic.NewClient(
		// hap supplies the credential: the SDK reads no ANTHROPIC_API_KEY and
		// no credentials profile of its own.
		option.WithoutEnvironmentDefaults(),
		option.WithHTTPClient(&http.Client{Transport: &hapauth.Transport{Pool: pool}}),
		option.WithBaseURL(baseURL),
		option.WithMaxRetries(maxRetries),
	)
}

func ask(client anthropic.Client) (*anthropic.Message, error) {
	return client.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model:     "claude-fake",
		MaxTokens: 16,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
	})
}

type fixture struct {
	srv   *testkit.TokenServer
	api   *testkit.FakeAPI
	scene *testkit.Scene
}

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
	// A user with an API key in the environment: the recipe must not send it.
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-api03-fake-from-env")
	tokenServer.Reset(t)
	return &fixture{srv: tokenServer, api: testkit.StartFakeAPI(t), scene: testkit.NewScene(t, tokenServer)}
}

func checkAuth(t *testing.T, r testkit.Request) {
	t.Helper()
	if r.XAPIKey {
		t.Error("x-api-key was sent")
	}
	if !r.HasBeta(hapauth.OAuthBeta) {
		t.Errorf("betas %v lack %s", r.Betas, hapauth.OAuthBeta)
	}
}

func apiStatus(err error) int {
	var apierr *anthropic.Error
	if errors.As(err, &apierr) {
		return apierr.StatusCode
	}
	return 0
}

func TestSDKExpiredLoginRefreshedOnce(t *testing.T) {
	f := setup(t)
	f.scene.WriteCreds(t, time.Now().Add(-time.Hour))
	pool := testkit.Open(t, f.scene.Config())
	client := newClient(pool, f.api.URL, 2)

	msg, err := ask(client)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Content[0].Text != "ok" {
		t.Errorf("content %+v", msg.Content)
	}
	if n := f.srv.Posts(t); n != 1 {
		t.Errorf("%d refresh POSTs, want 1", n)
	}
	reqs := f.api.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d API requests", len(reqs))
	}
	checkAuth(t, reqs[0])
	if reqs[0].Bearer != f.scene.CredsAccessToken(t) || reqs[0].Bearer == testkit.FixtureAccess {
		t.Error("bearer is not the refreshed token")
	}
	if _, err := ask(client); err != nil || f.srv.Posts(t) != 1 {
		t.Errorf("second call: %v after %d POSTs", err, f.srv.Posts(t))
	}
}

func TestSDK401OneRefreshOneRetry(t *testing.T) {
	f := setup(t)
	f.scene.WriteCreds(t, time.Now().Add(time.Hour))
	pool := testkit.Open(t, f.scene.Config())
	f.api.Reject(testkit.FixtureAccess)

	if _, err := ask(newClient(pool, f.api.URL, 2)); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.Posts(t); n != 1 {
		t.Errorf("%d refresh POSTs, want 1", n)
	}
	got := f.api.Bearers()
	if len(got) != 2 || got[0] != testkit.FixtureAccess || got[1] != f.scene.CredsAccessToken(t) {
		t.Fatalf("%d requests; want the old token, then the refreshed one", len(got))
	}
	for _, r := range f.api.Requests() {
		checkAuth(t, r)
	}
}

func TestSDK401ThatPersistsIsAnAuthenticationError(t *testing.T) {
	f := setup(t)
	f.scene.WriteCreds(t, time.Now().Add(time.Hour))
	pool := testkit.Open(t, f.scene.Config())
	f.api.RejectAll()

	_, err := ask(newClient(pool, f.api.URL, 2))
	if apiStatus(err) != 401 {
		t.Fatalf("err = %v, want the API's 401", err)
	}
	if n := f.srv.Posts(t); n != 1 {
		t.Errorf("%d refresh POSTs, want 1", n)
	}
	if n := len(f.api.Requests()); n != 2 {
		t.Errorf("%d API requests, want 2", n)
	}
}

func TestSDKConcurrent401sOneRefresh(t *testing.T) {
	f := setup(t)
	f.scene.WriteCreds(t, time.Now().Add(time.Hour))
	pool := testkit.Open(t, f.scene.Config())
	f.api.Reject(testkit.FixtureAccess)
	client := newClient(pool, f.api.URL, 2)

	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ask(client); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := f.srv.Posts(t); n != 1 {
		t.Errorf("%d refresh POSTs, want 1", n)
	}
	if st := testkit.OnlyStatus(t, pool); st.LastStatus != hap.StateOK {
		t.Errorf("last_status %q", st.LastStatus)
	}
}

func TestSDK429OnTheOnlyCredentialFollowsTheSDKRetries(t *testing.T) {
	f := setup(t)
	f.scene.WriteCreds(t, time.Now().Add(time.Hour))
	pool := testkit.Open(t, f.scene.Config())
	f.api.RateLimitAll(http.Header{"Retry-After": {"0"}})

	_, err := ask(newClient(pool, f.api.URL, 2))
	if apiStatus(err) != 429 {
		t.Fatalf("err = %v, want the API's 429", err)
	}
	reqs := f.api.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d API requests, want 1 + MaxRetries = 3", len(reqs))
	}
	for i, r := range reqs {
		if want := []string{"0", "1", "2"}[i]; r.RetryCount != want {
			t.Errorf("request %d: X-Stainless-Retry-Count %q, want %q (a retry of our own?)", i, r.RetryCount, want)
		}
	}
	if n := f.srv.Posts(t); n != 0 {
		t.Errorf("%d refresh POSTs: a 429 is not a reason to refresh", n)
	}
}

func TestSDK429WithoutResetHoldsTheSDKRetriesBack(t *testing.T) {
	f := setup(t)
	f.scene.WriteCreds(t, time.Now().Add(time.Hour))
	pool := testkit.Open(t, f.scene.Config())
	f.api.RateLimitAll(nil)

	_, err := ask(newClient(pool, f.api.URL, 2))
	// The only credential cools down: the SDK's retries send nothing, and the
	// pool's error comes back through the SDK's connection error.
	if !errors.Is(err, hap.ErrNoCredential) {
		t.Fatalf("err = %v, want hap.ErrNoCredential", err)
	}
	if n := len(f.api.Requests()); n != 1 {
		t.Errorf("%d API requests, want 1", n)
	}
}

func TestSDK429RetriesWithAnotherCredential(t *testing.T) {
	f := setup(t)
	f.scene.WritePoolRows(t, "aaaaaa", "bbbbbb")
	cfg := f.scene.Config()
	cfg.CredentialsPath, cfg.NoCredentialsFile = "", true
	pool := testkit.Open(t, cfg)
	f.api.RateLimit(testkit.RowToken("aaaaaa"), http.Header{"Retry-After": {"600"}})

	// MaxRetries 0: the one retry is the Transport's own.
	if _, err := ask(newClient(pool, f.api.URL, 0)); err != nil {
		t.Fatal(err)
	}
	got := f.api.Bearers()
	if len(got) != 2 || got[0] != testkit.RowToken("aaaaaa") || got[1] != testkit.RowToken("bbbbbb") {
		t.Fatalf("%d requests, want aaaaaa then bbbbbb", len(got))
	}
	if a := testkit.StatusOf(t, pool, "aaaaaa"); a.LastStatus != hap.StateExhausted {
		t.Errorf("aaaaaa %q", a.LastStatus)
	}
}
