package hap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// Strategy picks among the usable credentials of a pool.
type Strategy string

// The strategies of docs/ABI.md.
const (
	FillFirst  Strategy = "fill_first" // lowest priority first (the default)
	RoundRobin Strategy = "round_robin"
	LeastUsed  Strategy = "least_used"
	Random     Strategy = "random"
)

// AgentMode is the config key "agent": whether the pool defers to a running
// `hap agent` (docs/AGENT.md).
type AgentMode string

// The values of the "agent" key. The zero value "" sends nothing: the library's
// default, AgentOff.
const (
	AgentOff     AgentMode = "off"     // do the work in this process
	AgentPrefer  AgentMode = "prefer"  // ask the agent; without one, do the work here
	AgentRequire AgentMode = "require" // ask the agent; without one, ErrUnavailable
)

// CredentialsStore is the config key "credentials_store": where Claude Code's
// login is read and written.
type CredentialsStore string

// The values of "credentials_store". The zero value "" sends nothing: the
// library's default, CredentialsAuto.
const (
	CredentialsFileOnly CredentialsStore = "file"     // the credentials file only
	CredentialsKeychain CredentialsStore = "keychain" // the macOS Keychain item, the file as fallback
	CredentialsAuto     CredentialsStore = "auto"     // keychain on macOS, file elsewhere
)

// Config mirrors the config JSON of hap_pool_open (docs/ABI.md). The zero value of
// every field means "the library's default", so Config{} opens the user's own
// ~/.hermes/auth.json and ~/.claude/.credentials.json. Only fields that are set
// are sent to the library.
//
// Durations are sent in whole milliseconds, rounded up; a negative duration is
// an invalid argument.
type Config struct {
	// Provider is the pool key inside the pool file (default "anthropic").
	Provider string

	// PoolPath is the Hermes auth.json pool file (default $HERMES_HOME/auth.json,
	// else ~/.hermes/auth.json; unused when that directory does not exist, so
	// hap creates nothing there). NoPoolFile sends null instead: no pool file,
	// only the credentials file. Setting both is an invalid argument.
	PoolPath   string
	NoPoolFile bool

	// CredentialsPath is Claude Code's credentials file (default
	// $CLAUDE_CONFIG_DIR/.credentials.json, else ~/.claude/.credentials.json).
	// NoCredentialsFile sends null instead: no credentials file.
	CredentialsPath   string
	NoCredentialsFile bool

	// CredentialsStore chooses the file, or the macOS Keychain item Claude Code
	// uses with the file as fallback (docs/SPEC.md, "The macOS Keychain item";
	// tested on Linux against a fake security program only). SecurityProgram is
	// the `security` program that store runs (default /usr/bin/security).
	CredentialsStore CredentialsStore
	SecurityProgram  string

	// TokenURLs are tried in order (default: Anthropic's two token endpoints).
	// http:// is accepted only for loopback hosts. nil or empty means default.
	TokenURLs []string

	ClientID  string // OAuth client id sent with a refresh
	UserAgent string // User-Agent on the token endpoint (default "hap/<version>")

	// RefreshSkew: refresh when the access token expires within this
	// (default 5 minutes, at most 24 h).
	RefreshSkew time.Duration
	Strategy    Strategy      // default FillFirst
	LockTimeout time.Duration // longest wait for any lock (default 45 s, at most 1 h)
	HTTPTimeout time.Duration // per token-endpoint request (default 30 s, at most 1 h)

	// DisableClaudeCodeLock turns off taking Claude Code's own refresh lock
	// (claude_code_lock = false).
	DisableClaudeCodeLock bool
	// DisableExternalLogins stops seeding a claude_code row from the
	// credentials file (adopt_external_logins = false).
	DisableExternalLogins bool
	// DeferRefreshToClaudeCode: Claude Code owns its login; hap never refreshes
	// it, serves it while valid, adopts Claude Code's rotations, and otherwise
	// answers CodeUnavailable telling the user to run `claude`
	// (defer_refresh_to_claude_code = true). Anthropic's terms: one person's own
	// processes only.
	DeferRefreshToClaudeCode bool

	// Agent defers to a running `hap agent` serving the same stores: then the
	// process reads no store and never holds a refresh token (docs/AGENT.md).
	Agent AgentMode

	// Fleet makes a Redis server the login's authority and refresh lease, for one
	// person's own hosts sharing one login (docs/FLEET.md). Needs a libhap built
	// with the cargo feature "redis"; the zero value sends nothing.
	Fleet FleetConfig
}

// FleetConfig holds the redis_* keys of docs/ABI.md.
type FleetConfig struct {
	// URL is redis://user@host:port/db or rediss://...; a URL holding a password
	// is refused (use PasswordFile or $HAP_REDIS_PASSWORD).
	URL          string
	PasswordFile string
	Prefix       string        // key prefix (default "hap:")
	CAFile       string        // PEM CA for a rediss:// server with a private CA
	Lease        time.Duration // the refresh lease's time to live (default 10 s)
	// WaitReplicas is how many Redis replicas must acknowledge the possibly-spent
	// marker and each commit (Redis WAIT; 0, the default: no WAIT). Keep it below
	// the number of replicas you run (docs/FLEET.md, Replicas and failover).
	WaitReplicas int
	WaitTimeout  time.Duration // how long one WAIT waits (default 1 s)
	// Sentinels ("host:port" each) and SentinelMaster (the name they monitor
	// the master under) put the fleet behind Redis Sentinel; URL then names the
	// master by that name, without a port: redis://user@mymaster/0.
	Sentinels      []string
	SentinelMaster string
}

// MarshalJSON returns the config JSON hap_pool_open receives: only the keys
// whose field is set.
func (c Config) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	setStr := func(key, v string) {
		if v != "" {
			m[key] = v
		}
	}
	setStr("provider", c.Provider)
	if err := setPath(m, "pool_path", c.PoolPath, c.NoPoolFile, "PoolPath", "NoPoolFile"); err != nil {
		return nil, err
	}
	if err := setPath(m, "credentials_path", c.CredentialsPath, c.NoCredentialsFile, "CredentialsPath", "NoCredentialsFile"); err != nil {
		return nil, err
	}
	if len(c.TokenURLs) > 0 {
		m["token_urls"] = c.TokenURLs
	}
	setStr("client_id", c.ClientID)
	setStr("user_agent", c.UserAgent)
	setStr("strategy", string(c.Strategy))
	setStr("credentials_store", string(c.CredentialsStore))
	setStr("security_program", c.SecurityProgram)
	setStr("agent", string(c.Agent))
	setStr("redis_url", c.Fleet.URL)
	setStr("redis_password_file", c.Fleet.PasswordFile)
	setStr("redis_prefix", c.Fleet.Prefix)
	setStr("redis_ca_file", c.Fleet.CAFile)
	if c.Fleet.WaitReplicas < 0 {
		return nil, invalidArgument("Config.Fleet.WaitReplicas is negative")
	}
	if c.Fleet.WaitReplicas > 0 {
		m["redis_wait_replicas"] = c.Fleet.WaitReplicas
	}
	if len(c.Fleet.Sentinels) > 0 {
		m["redis_sentinels"] = c.Fleet.Sentinels
	}
	setStr("redis_sentinel_master", c.Fleet.SentinelMaster)
	for _, d := range []struct {
		key, field string
		v          time.Duration
	}{
		{"refresh_skew_ms", "RefreshSkew", c.RefreshSkew},
		{"lock_timeout_ms", "LockTimeout", c.LockTimeout},
		{"http_timeout_ms", "HTTPTimeout", c.HTTPTimeout},
		{"redis_lease_ms", "Fleet.Lease", c.Fleet.Lease},
		{"redis_wait_timeout_ms", "Fleet.WaitTimeout", c.Fleet.WaitTimeout},
	} {
		if d.v < 0 {
			return nil, invalidArgument(fmt.Sprintf("Config.%s is negative", d.field))
		}
		if d.v > 0 {
			m[d.key] = durationMS(d.v)
		}
	}
	if c.DisableClaudeCodeLock {
		m["claude_code_lock"] = false
	}
	if c.DisableExternalLogins {
		m["adopt_external_logins"] = false
	}
	if c.DeferRefreshToClaudeCode {
		m["defer_refresh_to_claude_code"] = true
	}
	return json.Marshal(m)
}

func setPath(m map[string]any, key, path string, none bool, field, noneField string) error {
	switch {
	case none && path != "":
		return invalidArgument(fmt.Sprintf("Config.%s and Config.%s are both set", field, noneField))
	case none:
		m[key] = nil
	case path != "":
		m[key] = path
	}
	return nil
}

// durationMS rounds up to whole milliseconds so a positive duration never
// becomes 0.
func durationMS(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// UnmarshalJSON reads the config JSON of docs/ABI.md into c, so a config shared with
// programs in other languages can be opened from Go. A null pool_path or
// credentials_path sets NoPoolFile / NoCredentialsFile; null elsewhere means
// the default. Unknown keys are an error naming the key, as in the library.
func (c *Config) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return invalidArgument("config is not a JSON object: " + err.Error())
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out Config
	for _, k := range keys {
		v := raw[k]
		isNull := bytes.Equal(bytes.TrimSpace(v), []byte("null"))
		var err error
		switch k {
		case "provider":
			err = decodeOpt(v, &out.Provider)
		case "pool_path":
			out.NoPoolFile = isNull
			err = decodeOpt(v, &out.PoolPath)
		case "credentials_path":
			out.NoCredentialsFile = isNull
			err = decodeOpt(v, &out.CredentialsPath)
		case "credentials_store":
			err = decodeOpt(v, (*string)(&out.CredentialsStore))
		case "security_program":
			err = decodeOpt(v, &out.SecurityProgram)
		case "token_urls":
			err = decodeOpt(v, &out.TokenURLs)
		case "client_id":
			err = decodeOpt(v, &out.ClientID)
		case "user_agent":
			err = decodeOpt(v, &out.UserAgent)
		case "strategy":
			err = decodeOpt(v, (*string)(&out.Strategy))
		case "refresh_skew_ms":
			err = decodeMS(v, &out.RefreshSkew)
		case "lock_timeout_ms":
			err = decodeMS(v, &out.LockTimeout)
		case "http_timeout_ms":
			err = decodeMS(v, &out.HTTPTimeout)
		case "claude_code_lock":
			var on *bool
			err = decodeOpt(v, &on)
			out.DisableClaudeCodeLock = on != nil && !*on
		case "adopt_external_logins":
			var on *bool
			err = decodeOpt(v, &on)
			out.DisableExternalLogins = on != nil && !*on
		case "defer_refresh_to_claude_code":
			var on *bool
			err = decodeOpt(v, &on)
			out.DeferRefreshToClaudeCode = on != nil && *on
		case "agent":
			err = decodeOpt(v, (*string)(&out.Agent))
		case "redis_url":
			err = decodeOpt(v, &out.Fleet.URL)
		case "redis_password_file":
			err = decodeOpt(v, &out.Fleet.PasswordFile)
		case "redis_prefix":
			err = decodeOpt(v, &out.Fleet.Prefix)
		case "redis_ca_file":
			err = decodeOpt(v, &out.Fleet.CAFile)
		case "redis_lease_ms":
			err = decodeMS(v, &out.Fleet.Lease)
		case "redis_wait_replicas":
			err = decodeOpt(v, &out.Fleet.WaitReplicas)
		case "redis_wait_timeout_ms":
			err = decodeMS(v, &out.Fleet.WaitTimeout)
		case "redis_sentinels":
			err = decodeOpt(v, &out.Fleet.Sentinels)
		case "redis_sentinel_master":
			err = decodeOpt(v, &out.Fleet.SentinelMaster)
		default:
			return invalidArgument(fmt.Sprintf("unknown config key %q", k))
		}
		if err != nil {
			return invalidArgument(fmt.Sprintf("config key %q: %v", k, err))
		}
	}
	*c = out
	return nil
}

func decodeOpt(v json.RawMessage, dst any) error { return json.Unmarshal(v, dst) }

func decodeMS(v json.RawMessage, dst *time.Duration) error {
	var ms *int64
	if err := json.Unmarshal(v, &ms); err != nil {
		return err
	}
	if ms != nil {
		*dst = time.Duration(*ms) * time.Millisecond
	}
	return nil
}
