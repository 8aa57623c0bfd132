// Command hap-stress-worker is the Go worker of the stress suite (through
// bindings/go, cgo). It resolves repeatedly until HAP_STRESS_UNTIL_MS (once
// when unset) and prints one summary JSON line, the format every stress worker
// shares. Environment: HAP_STRESS_CONFIG, HAP_STRESS_START_AT_MS,
// HAP_STRESS_UNTIL_MS, HAP_STRESS_MIN_VALIDITY_MS, HAP_STRESS_PAUSE_MS (mean
// pause between resolves, default 20). Never prints a token.
//
//	go build -o ../../build/go-worker .
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	hap "github.com/hap-oauth/hap/bindings/go"
)

type summary struct {
	Lang          string         `json:"lang"`
	PID           int            `json:"pid"`
	Calls         int64          `json:"calls"`
	OK            int64          `json:"ok"`
	Refreshed     int64          `json:"refreshed"`
	TokenChanges  int64          `json:"token_changes"`
	ExpiredServed int64          `json:"expired_served"`
	MaxCallMS     int64          `json:"max_call_ms"`
	TotalCallMS   int64          `json:"total_call_ms"`
	Errors        map[string]int `json:"errors"`
	Messages      []string       `json:"messages"`
}

func (s *summary) note(err error) {
	name, msg := "HAP_STATUS_UNKNOWN", err.Error()
	var he *hap.Error
	if errors.As(err, &he) {
		name, msg = he.Name, he.Message
	}
	s.Errors[name]++
	if len(s.Messages) < 5 {
		m := fmt.Sprintf("%s: %s", name, msg)
		if len(m) > 240 {
			m = m[:240]
		}
		s.Messages = append(s.Messages, m)
	}
}

func envInt(name string) int64 {
	v, _ := strconv.ParseInt(os.Getenv(name), 10, 64)
	return v
}

func emit(s *summary) {
	b, _ := json.Marshal(s)
	fmt.Println(string(b))
}

func main() {
	s := &summary{Lang: "go", PID: os.Getpid(), Errors: map[string]int{}, Messages: []string{}}
	var cfg hap.Config
	if err := json.Unmarshal([]byte(os.Getenv("HAP_STRESS_CONFIG")), &cfg); err != nil {
		s.Calls++
		s.note(err)
		emit(s)
		os.Exit(1)
	}
	pool, err := hap.Open(cfg)
	if err != nil {
		s.Calls++
		s.note(err)
		emit(s)
		os.Exit(1)
	}
	var opts hap.ResolveOptions
	if mv := os.Getenv("HAP_STRESS_MIN_VALIDITY_MS"); mv != "" {
		opts.MinValidity = time.Duration(envInt("HAP_STRESS_MIN_VALIDITY_MS")) * time.Millisecond
	}
	until := envInt("HAP_STRESS_UNTIL_MS")
	pause := envInt("HAP_STRESS_PAUSE_MS")
	if os.Getenv("HAP_STRESS_PAUSE_MS") == "" {
		pause = 20
	}
	if start := envInt("HAP_STRESS_START_AT_MS"); start > 0 {
		time.Sleep(time.Until(time.UnixMilli(start)))
	}
	last := ""
	for {
		t0 := time.Now()
		tok, err := pool.ResolveToken(opts)
		dt := time.Since(t0).Milliseconds()
		s.Calls++
		s.TotalCallMS += dt
		s.MaxCallMS = max(s.MaxCallMS, dt)
		if err != nil {
			s.note(err)
		} else {
			s.OK++
			if tok.Refreshed {
				s.Refreshed++
			}
			if !tok.ExpiresAt.IsZero() && !tok.ExpiresAt.After(time.Now()) {
				s.ExpiredServed++
			}
			d := sha256.Sum256([]byte(tok.AccessToken()))
			fp := hex.EncodeToString(d[:8])
			if last != "" && fp != last {
				s.TokenChanges++
			}
			last = fp
		}
		if until == 0 || time.Now().UnixMilli() >= until {
			break
		}
		if pause > 0 {
			time.Sleep(time.Duration(rand.Int64N(2*pause+1)) * time.Millisecond)
		}
	}
	_ = pool.Close()
	emit(s)
	if s.OK != s.Calls {
		os.Exit(1)
	}
}
