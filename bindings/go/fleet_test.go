package hap_test

import (
	"encoding/json"
	"testing"
	"time"

	hap "github.com/hap-oauth/hap/bindings/go"
)

// Go's Config sends only the keys it has fields for: the fleet keys must reach the
// library and come back from a shared config file unchanged.
func TestConfigFleetJSON(t *testing.T) {
	cfg := hap.Config{Fleet: hap.FleetConfig{
		URL:          "rediss://hap-refresher@127.0.0.1:6380/0",
		PasswordFile: "/run/secrets/hap-redis",
		Prefix:       "me:",
		CAFile:       "/etc/hap/ca.pem",
		Lease:        1500 * time.Microsecond, // rounds up to 2 ms
		WaitReplicas: 1,
		WaitTimeout:  250 * time.Millisecond,
	}}
	fleetJSONRoundTrip(t, cfg, `{"redis_ca_file":"/etc/hap/ca.pem","redis_lease_ms":2,"redis_password_file":"/run/secrets/hap-redis","redis_prefix":"me:","redis_url":"rediss://hap-refresher@127.0.0.1:6380/0","redis_wait_replicas":1,"redis_wait_timeout_ms":250}`)
	// Behind Redis Sentinel.
	fleetJSONRoundTrip(t, hap.Config{Fleet: hap.FleetConfig{
		URL:            "redis://hap-refresher@mymaster/0",
		Sentinels:      []string{"10.0.0.1:26379", "10.0.0.2:26379"},
		SentinelMaster: "mymaster",
	}}, `{"redis_sentinel_master":"mymaster","redis_sentinels":["10.0.0.1:26379","10.0.0.2:26379"],"redis_url":"redis://hap-refresher@mymaster/0"}`)
}

func fleetJSONRoundTrip(t *testing.T, cfg hap.Config, want string) {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var back hap.Config
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if b2, _ := json.Marshal(back); string(b2) != want {
		t.Fatalf("round trip: %s", b2)
	}
}
