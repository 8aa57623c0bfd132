package hap

import (
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"
)

// Pool is an open credential pool (a hap_pool handle). Its methods may be
// called from any number of goroutines at once. Close it when done; Close
// waits for calls in flight and is safe to call more than once.
type Pool struct {
	// mu is held shared by every call into libhap and exclusively by Close:
	// hap_pool_free must never run while another call uses the handle.
	mu      sync.RWMutex
	raw     rawPool // zero once closed
	cleanup runtime.Cleanup
}

// Open validates cfg, reads what exists of the stores and returns a Pool. It
// needs no network. It fails with ErrStoreCorrupt rather than start over a
// store it cannot parse.
func Open(cfg Config) (*Pool, error) {
	if err := CheckABI(); err != nil {
		return nil, err
	}
	js, err := cfg.MarshalJSON()
	if err != nil {
		return nil, err
	}
	raw, st, errJSON := rawOpen(string(js))
	if st != 0 {
		return nil, newError(st, errJSON)
	}
	p := &Pool{raw: raw}
	// A leak backstop only: a Pool that becomes unreachable without Close
	// still releases its handle. No call can be in flight then, because every
	// method keeps p reachable until its C call has returned.
	p.cleanup = runtime.AddCleanup(p, func(r rawPool) { r.free() }, raw)
	return p, nil
}

// Close releases the pool. It waits for calls in flight to return; calls
// made after it fail with ErrClosed. Closing a closed Pool does nothing.
func (p *Pool) Close() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.raw.valid() {
		return nil
	}
	p.cleanup.Stop()
	p.raw.free()
	p.raw = rawPool{}
	return nil
}

// call runs one libhap call under the shared lock and turns a failure into
// an *Error.
func (p *Pool) call(f func(rawPool) (int32, string, string)) (string, error) {
	if p == nil {
		return "", ErrClosed
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.raw.valid() {
		return "", ErrClosed
	}
	st, out, errJSON := f(p.raw)
	// p (and with it the cleanup's guard over the handle) must stay reachable
	// until the C call has returned.
	runtime.KeepAlive(p)
	if st != 0 {
		return "", newError(st, errJSON)
	}
	return out, nil
}

// ResolveOptions are the optional keys of hap_resolve_token's request.
type ResolveOptions struct {
	// MinValidity: the token must stay valid this long, else it is refreshed
	// (0 = the pool's RefreshSkew). Sent in whole ms, rounded up.
	MinValidity time.Duration
	// CredentialID: use only this credential.
	CredentialID string
	// ForceRefresh: refresh even if the token is still valid.
	ForceRefresh bool
}

type resolveWire struct {
	MinValidityMS *int64 `json:"min_validity_ms,omitempty"`
	CredentialID  string `json:"credential_id,omitempty"`
	ForceRefresh  bool   `json:"force_refresh,omitempty"`
}

func (o ResolveOptions) requestJSON() (string, error) {
	if o == (ResolveOptions{}) {
		return "", nil // NULL: the hot path builds no JSON
	}
	if o.MinValidity < 0 {
		return "", invalidArgument("ResolveOptions.MinValidity is negative")
	}
	w := resolveWire{CredentialID: o.CredentialID, ForceRefresh: o.ForceRefresh}
	if o.MinValidity > 0 {
		ms := durationMS(o.MinValidity)
		w.MinValidityMS = &ms
	}
	b, err := json.Marshal(w)
	return string(b), err
}

type tokenWire struct {
	AccessToken  string   `json:"access_token"`
	CredentialID string   `json:"credential_id"`
	Label        string   `json:"label"`
	Source       string   `json:"source"`
	AuthType     string   `json:"auth_type"`
	ExpiresAtMS  *float64 `json:"expires_at_ms"`
	Refreshed    bool     `json:"refreshed"`
}

// ResolveToken returns an access token valid for at least opts.MinValidity,
// refreshing it if needed (exactly one refresh POST machine-wide per rotation).
// It may block for a lock wait and a refresh, bounded by the pool's
// LockTimeout plus HTTPTimeout per token URL.
func (p *Pool) ResolveToken(opts ResolveOptions) (Token, error) {
	req, err := opts.requestJSON()
	if err != nil {
		return Token{}, err
	}
	out, err := p.call(func(r rawPool) (int32, string, string) { return r.resolve(req) })
	if err != nil {
		return Token{}, err
	}
	var w tokenWire
	if err := json.Unmarshal([]byte(out), &w); err != nil {
		// Never wrap err: its text could quote the result, which holds the token.
		return Token{}, &Error{Status: CodeInternal, Name: "HAP_STATUS_INTERNAL",
			Message: "resolve result is not the JSON docs/ABI.md describes"}
	}
	return Token{
		CredentialID: w.CredentialID,
		Label:        w.Label,
		Source:       w.Source,
		AuthType:     w.AuthType,
		ExpiresAt:    msTime(w.ExpiresAtMS),
		Refreshed:    w.Refreshed,
		secret:       &secret{w.AccessToken},
	}, nil
}

// Failure is what a caller saw when it used a token (hap_report_failure).
type Failure struct {
	CredentialID string        // required: Token.CredentialID
	StatusCode   int           // required: the HTTP status of the API response
	Reason       string        // optional, e.g. "rate_limit_error", "token_revoked"
	Message      string        // optional error message of the API (no secrets)
	ResetAt      time.Time     // optional: when the limit resets
	RetryAfter   time.Duration // optional: Retry-After; sent in whole seconds, rounded up
}

type failureWire struct {
	CredentialID string `json:"credential_id"`
	StatusCode   int    `json:"status_code"`
	Reason       string `json:"reason,omitempty"`
	Message      string `json:"message,omitempty"`
	ResetAtMS    *int64 `json:"reset_at,omitempty"`
	RetryAfterS  *int64 `json:"retry_after_s,omitempty"`
}

// FailureResult is what the pool did with a reported failure.
type FailureResult struct {
	CredentialID string
	// LastStatus is StateOK (nothing benched, e.g. a sibling had already
	// rotated the token), StateRefreshPending, StateExhausted or StateDead.
	LastStatus  CredentialState
	AvailableAt time.Time // set only for StateExhausted
}

// CredentialState is a credential's last_status.
type CredentialState string

// Credential states of docs/ABI.md. "" is a credential with no status yet.
const (
	StateOK             CredentialState = "ok"
	StateRefreshPending CredentialState = "refresh_pending"
	StateExhausted      CredentialState = "exhausted"
	StateDead           CredentialState = "dead"
)

// ReportFailure tells the pool that a token failed; the credential may be
// benched, refreshed at the next resolve, or left alone if a sibling process
// had already rotated it.
func (p *Pool) ReportFailure(f Failure) (FailureResult, error) {
	if f.RetryAfter < 0 {
		return FailureResult{}, invalidArgument("Failure.RetryAfter is negative")
	}
	w := failureWire{CredentialID: f.CredentialID, StatusCode: f.StatusCode, Reason: f.Reason, Message: f.Message}
	if !f.ResetAt.IsZero() {
		ms := f.ResetAt.UnixMilli()
		w.ResetAtMS = &ms
	}
	if f.RetryAfter > 0 {
		s := int64(math.Ceil(f.RetryAfter.Seconds()))
		w.RetryAfterS = &s
	}
	req, err := json.Marshal(w)
	if err != nil {
		return FailureResult{}, err
	}
	out, err := p.call(func(r rawPool) (int32, string, string) { return r.reportFailure(string(req)) })
	if err != nil {
		return FailureResult{}, err
	}
	var rw struct {
		CredentialID  string          `json:"credential_id"`
		LastStatus    CredentialState `json:"last_status"`
		AvailableAtMS *float64        `json:"available_at_ms"`
	}
	if err := json.Unmarshal([]byte(out), &rw); err != nil {
		return FailureResult{}, fmt.Errorf("hap: report_failure result: %w", err)
	}
	return FailureResult{CredentialID: rw.CredentialID, LastStatus: rw.LastStatus, AvailableAt: msTime(rw.AvailableAtMS)}, nil
}

// PoolStatus is a snapshot of the pool (hap_pool_status). It holds no secrets.
type PoolStatus struct {
	Provider        string
	PoolPath        string // "" when the pool has no pool file
	CredentialsPath string // "" when the pool has no credentials file
	Strategy        Strategy
	Credentials     []CredentialSnapshot
	Counters        Counters
	// Raw is the status JSON as the library returned it, including keys
	// this package does not know yet.
	Raw json.RawMessage
}

// Status is the former name of PoolStatus.
//
// Deprecated: use PoolStatus, the name every binding uses (docs/GLOSSARY.md).
type Status = PoolStatus

// CredentialSnapshot is one credential of a PoolStatus.
type CredentialSnapshot struct {
	CredentialID    string
	Label           string
	Source          string
	AuthType        string
	Priority        int
	LastStatus      CredentialState
	Available       bool
	AvailableAt     time.Time
	ExpiresAt       time.Time
	LastErrorCode   int
	LastErrorReason string
	RequestCount    int64
	HasToken        bool // its store holds an access token
}

// CredentialStatus is the former name of CredentialSnapshot.
//
// Deprecated: use CredentialSnapshot, the name every binding uses (docs/GLOSSARY.md).
type CredentialStatus = CredentialSnapshot

// Counters are this Pool's own, since it was opened.
type Counters struct {
	Resolves          int64 `json:"resolves"`
	RefreshPosts      int64 `json:"refresh_posts"`
	RefreshAdopted    int64 `json:"refresh_adopted"`
	JournalRecoveries int64 `json:"journal_recoveries"`
	LockWaits         int64 `json:"lock_waits"`
	StoreReads        int64 `json:"store_reads"`
	StoreWrites       int64 `json:"store_writes"`
}

type statusWire struct {
	Provider        string   `json:"provider"`
	PoolPath        *string  `json:"pool_path"`
	CredentialsPath *string  `json:"credentials_path"`
	Strategy        Strategy `json:"strategy"`
	Credentials     []struct {
		CredentialID    string   `json:"credential_id"`
		Label           *string  `json:"label"`
		Source          *string  `json:"source"`
		AuthType        *string  `json:"auth_type"`
		Priority        *int     `json:"priority"`
		LastStatus      *string  `json:"last_status"`
		Available       bool     `json:"available"`
		AvailableAtMS   *float64 `json:"available_at_ms"`
		ExpiresAtMS     *float64 `json:"expires_at_ms"`
		LastErrorCode   *int     `json:"last_error_code"`
		LastErrorReason *string  `json:"last_error_reason"`
		RequestCount    *int64   `json:"request_count"`
		HasToken        bool     `json:"has_token"`
	} `json:"credentials"`
	Counters Counters `json:"counters"`
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// Status returns a snapshot of the pool: its credentials and counters. It has
// no side effects.
func (p *Pool) Status() (PoolStatus, error) {
	out, err := p.call(func(r rawPool) (int32, string, string) { return r.status() })
	if err != nil {
		return PoolStatus{}, err
	}
	var w statusWire
	if err := json.Unmarshal([]byte(out), &w); err != nil {
		return PoolStatus{}, fmt.Errorf("hap: status result: %w", err)
	}
	s := PoolStatus{
		Provider:        w.Provider,
		PoolPath:        deref(w.PoolPath),
		CredentialsPath: deref(w.CredentialsPath),
		Strategy:        w.Strategy,
		Counters:        w.Counters,
		Raw:             json.RawMessage(out),
	}
	for _, c := range w.Credentials {
		s.Credentials = append(s.Credentials, CredentialSnapshot{
			CredentialID:    c.CredentialID,
			Label:           deref(c.Label),
			Source:          deref(c.Source),
			AuthType:        deref(c.AuthType),
			Priority:        deref(c.Priority),
			LastStatus:      CredentialState(deref(c.LastStatus)),
			Available:       c.Available,
			AvailableAt:     msTime(c.AvailableAtMS),
			ExpiresAt:       msTime(c.ExpiresAtMS),
			LastErrorCode:   deref(c.LastErrorCode),
			LastErrorReason: deref(c.LastErrorReason),
			RequestCount:    deref(c.RequestCount),
			HasToken:        c.HasToken,
		})
	}
	return s, nil
}
