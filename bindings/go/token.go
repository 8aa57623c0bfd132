package hap

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Token is a resolved access token and what the pool knows about it.
//
// The secret is reachable only through AccessToken(). String, Format (every
// fmt verb, including %v, %+v and %#v), GoString, LogValue and encoding/json
// leave it out; and because it sits behind a pointer, even fmt's reflection
// over a struct that embeds a Token in an unexported field prints an address,
// not the token.
type Token struct {
	CredentialID string
	Label        string
	Source       string    // e.g. "claude_code", "manual"
	AuthType     string    // "oauth" or "api_key"
	ExpiresAt    time.Time // zero for tokens without expiry (API keys)
	// Refreshed is true when this call's own POST produced the token.
	Refreshed bool

	secret *secret
}

type secret struct{ value string }

// AccessToken returns the secret, for the Authorization header. Go strings
// cannot be zeroed: keep the returned value's lifetime short.
func (t Token) AccessToken() string {
	if t.secret == nil {
		return ""
	}
	return t.secret.value
}

// String describes the token without the secret.
func (t Token) String() string {
	var b strings.Builder
	b.WriteString("hap.Token{credential_id=")
	b.WriteString(t.CredentialID)
	if t.Label != "" {
		b.WriteString(" label=")
		b.WriteString(t.Label)
	}
	if t.Source != "" {
		b.WriteString(" source=")
		b.WriteString(t.Source)
	}
	if t.AuthType != "" {
		b.WriteString(" auth_type=")
		b.WriteString(t.AuthType)
	}
	if !t.ExpiresAt.IsZero() {
		b.WriteString(" expires_at=")
		b.WriteString(t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	b.WriteString(" refreshed=")
	b.WriteString(strconv.FormatBool(t.Refreshed))
	b.WriteString(" access_token=")
	b.WriteString(t.redacted())
	b.WriteString("}")
	return b.String()
}

func (t Token) redacted() string {
	if t.secret == nil || t.secret.value == "" {
		return "<none>"
	}
	return "<redacted>"
}

// GoString is %#v without the secret.
func (t Token) GoString() string {
	return fmt.Sprintf("hap.Token{CredentialID:%q, Label:%q, Source:%q, AuthType:%q, ExpiresAt:%#v, Refreshed:%t, AccessToken:%q}",
		t.CredentialID, t.Label, t.Source, t.AuthType, t.ExpiresAt, t.Refreshed, t.redacted())
}

// Format makes every fmt verb print the redacted form.
func (t Token) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = f.Write([]byte(t.GoString()))
	case verb == 'q':
		_, _ = f.Write([]byte(strconv.Quote(t.String())))
	default:
		_, _ = f.Write([]byte(t.String()))
	}
}

// LogValue lets log/slog print a Token without the secret.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("credential_id", t.CredentialID),
		slog.String("source", t.Source),
		slog.Time("expires_at", t.ExpiresAt),
		slog.Bool("refreshed", t.Refreshed),
		slog.String("access_token", t.redacted()),
	)
}
