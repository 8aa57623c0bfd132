package hap

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The mapping from (status, error JSON) to *Error for every status, including
// the ones the real library cannot be driven to from a test.
func TestNewErrorMapsEveryStatus(t *testing.T) {
	for code, sentinel := range sentinels {
		err := error(newError(int32(code), `{"status": `+strconv.Itoa(int(code))+`, "name": "`+code.String()+`", "message": "m",
			"retry_at_ms": 1788000300000, "credential_id": "a1b2c3", "path": "/p/auth.json"}`))
		if !errors.Is(err, sentinel) {
			t.Errorf("%v does not match its sentinel", code)
		}
		for other, s := range sentinels {
			if other != code && errors.Is(err, s) {
				t.Errorf("%v matches %v", code, s)
			}
		}
		var he *Error
		if !errors.As(err, &he) || he.Status != code || he.Name != code.String() || he.Message != "m" ||
			he.CredentialID != "a1b2c3" || he.Path != "/p/auth.json" || !he.RetryAt.Equal(time.UnixMilli(1788000300000)) {
			t.Errorf("%v: %+v", code, he)
		}
		for _, part := range []string{code.String(), ": m", "a1b2c3", "/p/auth.json", "2026-"} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("%q lacks %q", err.Error(), part)
			}
		}
	}
}

// Unknown codes are a generic failure: an *Error matching no sentinel. An
// unreadable error JSON still names the status.
func TestNewErrorUnknownAndUnreadable(t *testing.T) {
	err := error(newError(42, ""))
	for _, s := range sentinels {
		if errors.Is(err, s) {
			t.Fatalf("status 42 matches %v", s)
		}
	}
	if err.Error() != "hap: HAP_STATUS_UNKNOWN" {
		t.Fatalf("got %q", err.Error())
	}
	err = newError(int32(CodeInternal), "not json")
	if !errors.Is(err, ErrInternal) || err.Error() != "hap: HAP_STATUS_INTERNAL" {
		t.Fatalf("got %v", err)
	}
}
