// Package hapauth plugs a hap.Pool into what Go HTTP code already passes
// around: an http.RoundTripper (Transport) that authenticates every request
// with the pool's token and reports 401/429 back to the pool, and an
// oauth2.TokenSource (TokenSource). It is a module of its own so that
// golang.org/x/oauth2 never becomes a dependency of the hap binding itself.
//
// Open the pool once per process and share it (one Transport, one
// http.Client, as many requests and goroutines as you like):
//
//	pool, err := hap.Open(hap.Config{})
//	if err != nil { ... }
//	defer pool.Close()
//	client := &http.Client{Transport: &hapauth.Transport{Pool: pool}}
//
// Subscription (OAuth) credentials are for one person's own use of Claude
// Code and Anthropic's apps; hap serves that person's own processes. Do not
// route other people's requests through them.
package hapauth

import (
	"context"
	"errors"
	"io"
	"log"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	hap "github.com/hap-oauth/hap/bindings/go"
)

// OAuthBeta is the anthropic-beta value that OAuth bearer tokens need.
const OAuthBeta = "oauth-2025-04-20"

// Transport is an http.RoundTripper that sends every request with a token from
// Pool: "Authorization: Bearer <token>", OAuthBeta added to anthropic-beta
// (the request's own betas kept), x-api-key removed. It resolves per request
// (a hot resolve is a few microseconds), so a refresh by any process is
// picked up at once.
//
//   - 401: the token was refused. The Transport reports it, resolves again
//     (libhap refreshes: one POST machine-wide) and sends the request once
//     more. A second 401 is reported and returned: no second refresh.
//   - 429: reported with its Retry-After / anthropic-ratelimit-unified-reset.
//     The request is sent once more only if the pool now hands out another
//     credential; otherwise the 429 is returned and the caller's retry policy
//     (the SDK's MaxRetries and back-off) decides: at most 1 + MaxRetries
//     requests, no storm.
//
// A request is sent a second time only if its body can be rebuilt
// (Body nil or http.NoBody, or GetBody set, as http.NewRequest does for
// bytes, strings and buffers); otherwise the 401/429 is reported and returned.
//
// When the pool has no token to give (e.g. hap.ErrNoCredential while the only
// credential cools down, hap.ErrReauthRequired), RoundTrip sends nothing and
// returns that error; http.Client wraps it in a *url.Error, and errors.Is /
// errors.As still find it.
type Transport struct {
	// Pool hands out the tokens. Required; open it once and share it.
	Pool *hap.Pool
	// Base sends the requests; nil means http.DefaultTransport.
	Base http.RoundTripper
	// Resolve is passed to every Pool.ResolveToken (e.g. MinValidity).
	Resolve hap.ResolveOptions
	// ReportError, when set, receives the error of a failed report to the
	// pool (the response is returned all the same). Nil logs one line with
	// the standard log package. Errors never hold tokens.
	ReportError func(error)
}

// RoundTrip implements http.RoundTripper. It does not modify req.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Pool == nil {
		closeRequestBody(req)
		return nil, errors.New("hapauth: Transport.Pool is nil: open a hap.Pool once and set it")
	}
	if prev := req.Response; prev != nil && prev.Request != nil && prev.Request.URL.Host != req.URL.Host {
		// http.Client following a redirect to another host: the token is for
		// the API, not for wherever a response points (http.Client drops the
		// caller's own Authorization there too).
		return t.base().RoundTrip(req)
	}
	ctx := req.Context()
	tok, err := t.resolve(ctx, t.Resolve)
	if err != nil {
		closeRequestBody(req)
		return nil, err
	}
	res, err := t.base().RoundTrip(authorized(req, tok, req.Body))
	if err != nil || (res.StatusCode != http.StatusUnauthorized && res.StatusCode != http.StatusTooManyRequests) {
		return res, err
	}

	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	retry := replayable && ctx.Err() == nil
	var next *hap.Token
	if res.StatusCode == http.StatusUnauthorized {
		next = t.after401(ctx, tok, retry)
	} else {
		next = t.after429(ctx, tok, res, retry)
	}
	if next == nil || ctx.Err() != nil {
		return res, nil
	}
	body := req.Body
	if req.GetBody != nil {
		if body, err = req.GetBody(); err != nil {
			return res, nil // cannot rebuild the body: the caller gets the answer it had
		}
	}
	discard(res)
	again, err := t.base().RoundTrip(authorized(req, *next, body))
	if err != nil {
		return nil, err
	}
	// Reported, never retried from here again: the caller's policy takes over.
	switch again.StatusCode {
	case http.StatusUnauthorized:
		t.after401(ctx, *next, false)
	case http.StatusTooManyRequests:
		t.after429(ctx, *next, again, false)
	}
	return again, nil
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// authorized is a copy of req with tok and the OAuth headers; req is untouched
// (RoundTripper contract).
func authorized(req *http.Request, tok hap.Token, body io.ReadCloser) *http.Request {
	r := req.Clone(req.Context())
	r.Body = body
	r.Header.Del("X-Api-Key")
	r.Header.Set("Authorization", "Bearer "+tok.AccessToken())
	var betas []string
	seen := false
	for _, v := range r.Header.Values("Anthropic-Beta") {
		for _, b := range strings.Split(v, ",") {
			if b = strings.TrimSpace(b); b != "" {
				betas = append(betas, b)
				seen = seen || b == OAuthBeta
			}
		}
	}
	if !seen {
		betas = append(betas, OAuthBeta)
	}
	r.Header.Set("Anthropic-Beta", strings.Join(betas, ","))
	return r
}

// resolve is Pool.ResolveToken that gives up when ctx ends. libhap's call
// cannot be interrupted (it is bounded by the pool's LockTimeout plus
// HTTPTimeout); it finishes on its own goroutine and its result is dropped.
func (t *Transport) resolve(ctx context.Context, opts hap.ResolveOptions) (hap.Token, error) {
	if ctx.Done() == nil {
		return t.Pool.ResolveToken(opts)
	}
	type result struct {
		tok hap.Token
		err error
	}
	ch := make(chan result, 1)
	go func() {
		tok, err := t.Pool.ResolveToken(opts)
		ch <- result{tok, err}
	}()
	select {
	case r := <-ch:
		return r.tok, r.err
	case <-ctx.Done():
		return hap.Token{}, ctx.Err()
	}
}

// after401 reports a refused token and returns the token to retry with, or
// nil for "return the 401". It first re-resolves the credential: libhap judges
// a reported 401 against the token this pool handle served last, so the late
// 401 of a concurrent request, reported after another request's refresh,
// would read as "the new token is refused too" and bench a good credential.
// If the pool already serves another token, that one is retried unreported.
// One at a time per (pool, credential), so that re-check and report are not
// split by another request's refresh.
func (t *Transport) after401(ctx context.Context, used hap.Token, retry bool) *hap.Token {
	defer lock401(t.Pool, used.CredentialID)()
	pinned := t.Resolve
	pinned.CredentialID = used.CredentialID
	if cur, err := t.resolve(ctx, pinned); err == nil && cur.AccessToken() != used.AccessToken() {
		if retry {
			return &cur
		}
		return nil
	}
	t.report(hap.Failure{CredentialID: used.CredentialID, StatusCode: http.StatusUnauthorized, Reason: "authentication_error"})
	if !retry {
		return nil
	}
	fresh, err := t.resolve(ctx, t.Resolve)
	if err != nil || fresh.AccessToken() == used.AccessToken() {
		return nil
	}
	return &fresh
}

// after429 reports a rate limit and returns another credential's token to
// retry with, or nil for "return the 429".
func (t *Transport) after429(ctx context.Context, used hap.Token, res *http.Response, retry bool) *hap.Token {
	f := hap.Failure{CredentialID: used.CredentialID, StatusCode: http.StatusTooManyRequests, Reason: "rate_limit_error"}
	now := time.Now()
	if d, ok := retryAfter(res.Header.Get("Retry-After"), now); ok {
		if d > 0 {
			f.RetryAfter = d
		} else {
			f.ResetAt = now // "retry now": Failure.RetryAfter 0 would mean "not given"
		}
	}
	if at, ok := unifiedReset(res.Header.Get("Anthropic-Ratelimit-Unified-Reset")); ok {
		f.ResetAt = at // libhap prefers reset_at over retry_after_s
	}
	t.report(f)
	if !retry {
		return nil
	}
	other, err := t.resolve(ctx, t.Resolve)
	if err != nil || other.CredentialID == used.CredentialID {
		return nil
	}
	return &other
}

func (t *Transport) report(f hap.Failure) {
	if _, err := t.Pool.ReportFailure(f); err != nil {
		err = &ReportError{CredentialID: f.CredentialID, StatusCode: f.StatusCode, Err: err}
		if t.ReportError != nil {
			t.ReportError(err)
		} else {
			log.Print(err)
		}
	}
}

// ReportError is a report to the pool that failed; the response it was about
// was returned to the caller all the same.
type ReportError struct {
	CredentialID string
	StatusCode   int
	Err          error
}

func (e *ReportError) Error() string {
	return "hapauth: reporting " + strconv.Itoa(e.StatusCode) + " for credential " + e.CredentialID + ": " + e.Err.Error()
}

func (e *ReportError) Unwrap() error { return e.Err }

// maxRetryAfter is the longest retry_after_s libhap accepts (a year); a longer
// Retry-After is clamped to it rather than fail the whole report.
const maxRetryAfter = 31_536_000 * time.Second

// retryAfter reads Retry-After: delta-seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s < 0 || math.IsNaN(s) {
			return 0, false
		}
		if s >= maxRetryAfter.Seconds() {
			return maxRetryAfter, true
		}
		return time.Duration(s * float64(time.Second)), true
	}
	if at, err := http.ParseTime(v); err == nil {
		return min(max(0, at.Sub(now)), maxRetryAfter), true
	}
	return 0, false
}

// unifiedReset reads anthropic-ratelimit-unified-reset: epoch seconds (or an
// RFC 3339 time, as the other anthropic-ratelimit-*-reset headers are). libhap
// takes a reset_at up to the year 9999; later values are dropped.
func unifiedReset(v string) (time.Time, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 && s < 253402300800 {
		return time.UnixMilli(int64(s * 1000)), true
	}
	if at, err := time.Parse(time.RFC3339, v); err == nil && at.Unix() > 0 {
		return at, true
	}
	return time.Time{}, false
}

func discard(res *http.Response) {
	// A little reading lets the connection be reused; an error body is small.
	_, _ = io.CopyN(io.Discard, res.Body, 64<<10)
	res.Body.Close()
}

// closeRequestBody honours the RoundTripper contract: the body is closed
// even when nothing is sent.
func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

type lockKey struct {
	pool *hap.Pool
	id   string
}

type lockEntry struct {
	mu   sync.Mutex
	refs int
}

var locks struct {
	mu sync.Mutex
	m  map[lockKey]*lockEntry
}

// lock401 serialises 401 handling per (pool, credential) and returns the
// unlock. Entries live only while in use, so a closed Pool is not kept alive.
func lock401(p *hap.Pool, id string) func() {
	k := lockKey{p, id}
	locks.mu.Lock()
	if locks.m == nil {
		locks.m = map[lockKey]*lockEntry{}
	}
	e := locks.m[k]
	if e == nil {
		e = &lockEntry{}
		locks.m[k] = e
	}
	e.refs++
	locks.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		locks.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(locks.m, k)
		}
		locks.mu.Unlock()
	}
}
