package hap

import (
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Code is a hap_status value (docs/ABI.md, "Status values"). Callers treat a
// non-zero value they do not know as a generic failure.
type Code int32

// The status values fixed by docs/ABI.md. A test checks each against the
// library's hap_status_name, so a drift between this list and libhap fails CI.
const (
	CodeOK                Code = 0
	CodeInvalidArgument   Code = 1
	CodeNoCredential      Code = 2
	CodeReauthRequired    Code = 3
	CodeUnavailable       Code = 4
	CodeLockTimeout       Code = 5
	CodeStoreCorrupt      Code = 6
	CodeIO                Code = 7
	CodeUnknownCredential Code = 8
	CodeInternal          Code = 100
)

// String returns the library's static name, e.g. "HAP_STATUS_NO_CREDENTIAL"
// ("HAP_STATUS_UNKNOWN" for a value the library does not know).
func (c Code) String() string { return statusName(int32(c)) }

// Sentinel errors, one per failure status. Every error a Pool method returns
// for a library failure is an *Error; errors.Is(err, ErrNoCredential) and so
// on match it by its Status.
var (
	ErrInvalidArgument   = errors.New("hap: invalid argument")
	ErrNoCredential      = errors.New("hap: no usable credential")
	ErrReauthRequired    = errors.New("hap: re-authentication required")
	ErrUnavailable       = errors.New("hap: token endpoint unavailable")
	ErrLockTimeout       = errors.New("hap: lock timeout")
	ErrStoreCorrupt      = errors.New("hap: store corrupt")
	ErrIO                = errors.New("hap: I/O error")
	ErrUnknownCredential = errors.New("hap: unknown credential")
	ErrInternal          = errors.New("hap: internal error")
)

// Errors that come from this package rather than from libhap.
var (
	// ErrClosed is returned by every Pool method after Close.
	ErrClosed = errors.New("hap: pool is closed")
	// ErrIncompatibleLibrary is wrapped by the error Open and CheckABI return
	// when the loaded libhap speaks another ABI than the hap.h this package
	// was compiled against.
	ErrIncompatibleLibrary = errors.New("hap: incompatible libhap")
)

var sentinels = map[Code]error{
	CodeInvalidArgument:   ErrInvalidArgument,
	CodeNoCredential:      ErrNoCredential,
	CodeReauthRequired:    ErrReauthRequired,
	CodeUnavailable:       ErrUnavailable,
	CodeLockTimeout:       ErrLockTimeout,
	CodeStoreCorrupt:      ErrStoreCorrupt,
	CodeIO:                ErrIO,
	CodeUnknownCredential: ErrUnknownCredential,
	CodeInternal:          ErrInternal,
}

// Error is a failure reported by libhap: the error JSON of docs/ABI.md as a Go
// value. It never carries a token (the library guarantees its message has
// none, and this type adds only ids, paths and times).
type Error struct {
	Status       Code      // the hap_status the call returned
	Name         string    // e.g. "HAP_STATUS_NO_CREDENTIAL"
	Message      string    // one line, no secrets
	RetryAt      time.Time // zero unless the library says when to try again
	CredentialID string    // "" unless the failure concerns one credential
	Path         string    // "" unless the failure concerns one file
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("hap: ")
	b.WriteString(e.Name)
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.CredentialID != "" {
		b.WriteString(" (credential ")
		b.WriteString(e.CredentialID)
		b.WriteString(")")
	}
	if e.Path != "" {
		b.WriteString(" (path ")
		b.WriteString(e.Path)
		b.WriteString(")")
	}
	if !e.RetryAt.IsZero() {
		b.WriteString(" (retry at ")
		b.WriteString(e.RetryAt.UTC().Format(time.RFC3339Nano))
		b.WriteString(")")
	}
	return b.String()
}

// Is reports whether target is the sentinel for e's Status.
func (e *Error) Is(target error) bool {
	s, ok := sentinels[e.Status]
	return ok && s == target
}

type errorWire struct {
	Status       *int32   `json:"status"`
	Name         string   `json:"name"`
	Message      string   `json:"message"`
	RetryAtMS    *float64 `json:"retry_at_ms"`
	CredentialID *string  `json:"credential_id"`
	Path         *string  `json:"path"`
}

// newError builds the *Error for a failed call from its status and error JSON.
// The status the function returned is authoritative; the JSON adds detail. An
// empty or unreadable error JSON still yields a usable error.
func newError(status int32, errJSON string) *Error {
	e := &Error{Status: Code(status)}
	var w errorWire
	if errJSON != "" && json.Unmarshal([]byte(errJSON), &w) == nil {
		e.Name = w.Name
		e.Message = w.Message
		e.RetryAt = msTime(w.RetryAtMS)
		if w.CredentialID != nil {
			e.CredentialID = *w.CredentialID
		}
		if w.Path != nil {
			e.Path = *w.Path
		}
	}
	if e.Name == "" {
		e.Name = e.Status.String()
	}
	return e
}

// invalidArgument is an error this package raises before calling libhap, shaped
// like the library's own so callers handle both the same way.
func invalidArgument(msg string) *Error {
	return &Error{Status: CodeInvalidArgument, Name: "HAP_STATUS_INVALID_ARGUMENT", Message: msg}
}

// msTime converts an optional epoch-milliseconds JSON number.
func msTime(ms *float64) time.Time {
	if ms == nil {
		return time.Time{}
	}
	return time.UnixMilli(int64(*ms))
}
