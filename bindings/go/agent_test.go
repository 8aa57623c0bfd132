package hap_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	hap "github.com/hap-oauth/hap/bindings/go"
)

// Config sends only the fields it knows: without an Agent field Go users could not
// set the "agent" key at all (docs/AGENT.md, issue 15).
func TestConfigAgentJSON(t *testing.T) {
	b, err := json.Marshal(hap.Config{Agent: hap.AgentPrefer})
	if err != nil || string(b) != `{"agent":"prefer"}` {
		t.Fatalf("got %s, %v", b, err)
	}
	var back hap.Config
	if err := json.Unmarshal([]byte(`{"agent": "require"}`), &back); err != nil || back.Agent != hap.AgentRequire {
		t.Fatalf("unmarshal: %+v, %v", back, err)
	}
	if b, _ := json.Marshal(hap.Config{}); string(b) != "{}" {
		t.Fatalf("the zero Agent sends nothing: %s", b)
	}
}

// The library reads the key: "require" with no agent running fails every call
// with ErrUnavailable naming the socket; a value it does not know is refused.
func TestAgentRequireWithoutAnAgent(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	p, err := hap.Open(hap.Config{
		NoPoolFile:      true,
		CredentialsPath: filepath.Join(dir, ".credentials.json"),
		Agent:           hap.AgentRequire,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = p.ResolveToken(hap.ResolveOptions{})
	if !errors.Is(err, hap.ErrUnavailable) || !strings.Contains(err.Error(), "agent.sock") {
		t.Fatalf("resolve: %v", err)
	}
	_, err = hap.Open(hap.Config{NoPoolFile: true, CredentialsPath: filepath.Join(dir, "c.json"), Agent: "sometimes"})
	if !errors.Is(err, hap.ErrInvalidArgument) || !strings.Contains(err.Error(), "agent") {
		t.Fatalf("bad value: %v", err)
	}
}
