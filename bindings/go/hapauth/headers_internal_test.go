package hapauth

import (
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"120", 120 * time.Second, true},
		{" 0 ", 0, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"99999999999", maxRetryAfter, true}, // libhap takes at most a year
		{"Mon, 30 Nov 2026 12:01:00 GMT", time.Minute, true},
		{"Mon, 30 Nov 2026 11:00:00 GMT", 0, true}, // in the past: now
		{"", 0, false},
		{"-5", 0, false},
		{"Fri, 31 Dec 9999 23:59:59 GMT", maxRetryAfter, true},
		{"soon", 0, false},
	} {
		got, ok := retryAfter(c.in, now)
		if got != c.want || ok != c.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestUnifiedReset(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"1788000000", time.Unix(1788000000, 0), true},
		{"2026-11-30T12:00:00Z", time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC), true},
		{"", time.Time{}, false},
		{"0", time.Time{}, false},
		{"1e15", time.Time{}, false}, // past the year 9999, which libhap refuses
		{"later", time.Time{}, false},
	} {
		got, ok := unifiedReset(c.in)
		if !got.Equal(c.want) || ok != c.ok {
			t.Errorf("unifiedReset(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
