package testkit

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

const oauthBeta = "oauth-2025-04-20"

// Request is what the fake Messages API saw of one request.
type Request struct {
	Bearer     string   // "" when there was no "Authorization: Bearer"
	Betas      []string // anthropic-beta, split on commas
	XAPIKey    bool     // an x-api-key header was present
	RetryCount string   // X-Stainless-Retry-Count, as the SDK sends it
	Body       string
}

// HasBeta reports whether the request carried beta b.
func (r Request) HasBeta(b string) bool {
	for _, v := range r.Betas {
		if v == b {
			return true
		}
	}
	return false
}

// FakeAPI is a fake Anthropic Messages API on 127.0.0.1 that treats
// credentials as the real one does:
//
//   - "Authorization: Bearer" is required; an OAuth token (sk-ant-oat...) also
//     needs oauth-2025-04-20 in anthropic-beta, else 401;
//   - x-api-key next to a bearer token is a 400 (a request carries one);
//   - tokens in Rejected (every token with RejectAll) get 401
//     authentication_error; tokens in RateLimited (all with RateLimitAll) get
//     429 rate_limit_error with those response headers;
//   - otherwise POST /v1/messages answers 200 with a minimal Message.
type FakeAPI struct {
	URL string

	mu           sync.Mutex
	requests     []Request
	rejected     map[string]bool
	rejectAll    bool
	rateLimited  map[string]http.Header
	rateLimitAll http.Header
}

// StartFakeAPI starts the server; it stops with the test.
func StartFakeAPI(t testing.TB) *FakeAPI {
	t.Helper()
	a := &FakeAPI{rejected: map[string]bool{}, rateLimited: map[string]http.Header{}}
	srv := httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(srv.Close)
	a.URL = srv.URL
	return a
}

// Reject makes the API refuse token (401).
func (a *FakeAPI) Reject(token string) { a.mu.Lock(); a.rejected[token] = true; a.mu.Unlock() }

// RejectAll makes the API refuse every token (401).
func (a *FakeAPI) RejectAll() { a.mu.Lock(); a.rejectAll = true; a.mu.Unlock() }

// RateLimit makes the API answer 429 with headers h to token.
func (a *FakeAPI) RateLimit(token string, h http.Header) {
	a.mu.Lock()
	a.rateLimited[token] = h
	a.mu.Unlock()
}

// RateLimitAll makes the API answer 429 with headers h to every token.
func (a *FakeAPI) RateLimitAll(h http.Header) {
	if h == nil {
		h = http.Header{}
	}
	a.mu.Lock()
	a.rateLimitAll = h
	a.mu.Unlock()
}

// Requests returns the /v1/messages requests seen so far.
func (a *FakeAPI) Requests() []Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Request(nil), a.requests...)
}

// Bearers returns the bearer token of each request, in arrival order.
func (a *FakeAPI) Bearers() []string {
	var out []string
	for _, r := range a.Requests() {
		out = append(out, r.Bearer)
	}
	return out
}

func errorBody(typ, msg string) string {
	b, _ := json.Marshal(map[string]any{"type": "error", "error": map[string]string{"type": typ, "message": msg}})
	return string(b)
}

func (a *FakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	send := func(status int, text string, h http.Header) {
		for k, vs := range h {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, text)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/messages" {
		send(404, errorBody("not_found_error", r.Method+" "+r.URL.Path), nil)
		return
	}
	req := Request{
		XAPIKey:    len(r.Header.Values("X-Api-Key")) > 0,
		RetryCount: r.Header.Get("X-Stainless-Retry-Count"),
		Body:       string(body),
	}
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
		req.Bearer = strings.TrimPrefix(auth, "Bearer ")
	}
	for _, v := range r.Header.Values("Anthropic-Beta") {
		for _, b := range strings.Split(v, ",") {
			if b = strings.TrimSpace(b); b != "" {
				req.Betas = append(req.Betas, b)
			}
		}
	}
	a.mu.Lock()
	a.requests = append(a.requests, req)
	n := len(a.requests)
	rejected := a.rejectAll || a.rejected[req.Bearer]
	limit, limited := a.rateLimited[req.Bearer]
	if a.rateLimitAll != nil {
		limit, limited = a.rateLimitAll, true
	}
	a.mu.Unlock()

	switch {
	case req.XAPIKey && req.Bearer != "":
		send(400, errorBody("invalid_request_error", "send either x-api-key or Authorization, not both"), nil)
	case req.Bearer == "":
		send(401, errorBody("authentication_error", "missing bearer token"), nil)
	case strings.HasPrefix(req.Bearer, "sk-ant-oat") && !req.HasBeta(oauthBeta):
		send(401, errorBody("authentication_error", "OAuth authentication is currently not supported."), nil)
	case rejected:
		send(401, errorBody("authentication_error", "OAuth token has been revoked."), nil)
	case limited:
		send(429, errorBody("rate_limit_error", "rate limited"), limit)
	default:
		var in struct {
			Model string `json:"model"`
		}
		_ = json.Unmarshal(body, &in)
		if in.Model == "" {
			in.Model = "claude-fake"
		}
		msg, _ := json.Marshal(map[string]any{
			"id": fmt.Sprintf("msg_fake_%d", n), "type": "message", "role": "assistant", "model": in.Model,
			"content":     []map[string]string{{"type": "text", "text": "ok"}},
			"stop_reason": "end_turn", "stop_sequence": nil,
			"usage": map[string]int{"input_tokens": 1, "output_tokens": 1},
		})
		send(200, string(msg), nil)
	}
}
