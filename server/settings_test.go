package server

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// parseArgs is what cmd/realtimed does: defaults, environment, flags.
func parseArgs(t testing.TB, env map[string]string, args ...string) (Options, error) {
	t.Helper()
	o := Defaults()
	fs := flag.NewFlagSet("realtimed", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := RegisterFlags(fs, &o, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		return o, err
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	return o, o.Validate()
}

func TestDefaultsAreValid(t *testing.T) {
	o := Defaults()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.BatchWindow != 20*time.Millisecond || o.BatchMax != 100 || o.QueueBytes != 4<<20 || !o.Demo ||
		o.Addr != "127.0.0.1:4000" || strings.Join(o.PublicPrefixes, ",") != "public:,public." || o.ResumeShare != 0.2 {
		t.Fatalf("defaults: %+v", o)
	}
	enc := Defaults()
	enc.Env.Shell = Encore
	if err := enc.Validate(); err != nil {
		t.Fatal(err)
	}
}

// Every setting is reachable in both shells or says why not; flags and env go together.
func TestSettingsDeclareBothShells(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Settings() {
		for _, name := range []string{"flag:" + s.Flag, "env:" + s.Env, "cue:" + s.CUE, "secret:" + s.Secret} {
			if strings.HasSuffix(name, ":") {
				continue
			}
			if seen[name] {
				t.Errorf("%s: %s used twice", s.Field, name)
			}
			seen[name] = true
		}
		if s.Env != "" && !strings.HasPrefix(s.Env, "REALTIME_") {
			t.Errorf("%s: environment variable %s without the REALTIME_ prefix", s.Field, s.Env)
		}
	}
}

func TestFlagsAndEnvironment(t *testing.T) {
	o, err := parseArgs(t, map[string]string{"REALTIME_ADDR": "127.0.0.1:5999", "REALTIME_BATCH_WINDOW": "7ms", "REALTIME_PPROF": "1"},
		"-batch-max", "42", "-public-prefixes", "a., b:", "-demo=false")
	if err != nil {
		t.Fatal(err)
	}
	if o.Addr != "127.0.0.1:5999" || o.BatchWindow != 7*time.Millisecond || o.BatchMax != 42 || !o.Pprof || o.Demo ||
		strings.Join(o.PublicPrefixes, "|") != "a.|b:" {
		t.Fatalf("%+v", o)
	}
	if _, err := parseArgs(t, nil, "-no-such-flag"); err == nil {
		t.Fatal("unknown flag accepted")
	}
	// A bad environment value is an error naming the variable, not a silent default.
	_, err = parseArgs(t, map[string]string{"REALTIME_BATCH_MAX": "lots"})
	if err == nil || !strings.Contains(err.Error(), "$REALTIME_BATCH_MAX") {
		t.Fatalf("bad env: %v", err)
	}
}

// Validate names the setting the way the shell's user sets it.
func TestValidateNamesTheSetting(t *testing.T) {
	for _, tc := range []struct {
		shell Shell
		edit  func(*Options)
		want  string
	}{
		{Standalone, func(o *Options) { o.BatchMax = 0 }, "-batch-max ($REALTIME_BATCH_MAX): 0 is below the minimum 1"},
		{Encore, func(o *Options) { o.BatchMax = 0 }, "BatchMax in realtime/config.cue: 0 is below the minimum 1"},
		{Standalone, func(o *Options) { o.Heartbeat = time.Millisecond }, "-heartbeat ($REALTIME_HEARTBEAT): 1ms is below the minimum 100ms"},
		{Encore, func(o *Options) { o.ResumeShare = 1 }, "ResumeShare in realtime/config.cue: 1: must be below 1"},
		{Encore, func(o *Options) { o.TokenKeys = "nonsense" }, "the secret TokenKeys: "},
		{Standalone, func(o *Options) { o.TokenKeys = "nonsense" }, "-token-keys ($REALTIME_TOKEN_KEYS): "},
		{Encore, func(o *Options) { o.AdminKey = "short" }, "the secret FlagsAdminKey: shorter than 16 bytes"},
		{Standalone, func(o *Options) { o.Bus = "carrier-pigeon" }, "-bus ($REALTIME_BUS): unknown bus \"carrier-pigeon\""},
		{Standalone, func(o *Options) { o.NATSUser, o.NATSPassword = "u", "p" }, "-nats-url ($REALTIME_NATS_URL): credentials"},
		{Encore, func(o *Options) { o.Env.Hosted = true; o.DevMint = true }, "DevMint in realtime/config.cue: the dev token endpoint"},
		{Encore, func(o *Options) { o.DataDir = "data" }, "DataDir in realtime/config.cue: \"data\" is inside the app"},
	} {
		o := Defaults()
		o.Env.Shell = tc.shell
		tc.edit(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
	}
}

// The multi-instance guard: outside local development the embedded NATS is refused
// unless SingleInstance says this app runs one instance; NATSURL lifts it, and so does
// the Postgres bus (TestBusSelection).
func TestMultiInstanceGuard(t *testing.T) {
	o := Defaults()
	o.Env = Environment{Shell: Encore, Hosted: true}
	err := o.Validate()
	if !errors.Is(err, ErrSingleInstance) || !strings.Contains(err.Error(), "the secret NATSURL") ||
		!strings.Contains(err.Error(), "SingleInstance in realtime/config.cue: true") {
		t.Fatalf("hosted, embedded: %v", err)
	}
	o.SingleInstance = true
	if err := o.Validate(); err != nil {
		t.Fatalf("single instance: %v", err)
	}
	o.SingleInstance, o.NATSURL = false, "nats://nats.internal:4222"
	if err := o.Validate(); err != nil {
		t.Fatalf("external NATS: %v", err)
	}
	local := Defaults()
	local.Env = Environment{Shell: Encore}
	if err := local.Validate(); err != nil {
		t.Fatalf("local development: %v", err)
	}
}

// FromEncore maps the generated Config and the secrets onto Options by name.
func TestFromEncore(t *testing.T) {
	type config struct {
		BatchWindow    string
		BatchMax       int
		PublicPrefixes []string
		ResumeShare    float64
		SingleInstance bool
	}
	type secrets struct{ NATSURL, PublisherKey string }
	o, err := FromEncore(&config{BatchWindow: "5ms", BatchMax: 7, PublicPrefixes: []string{"x."}, ResumeShare: 0.5, SingleInstance: true},
		&secrets{NATSURL: "nats://n:4222", PublisherKey: "pk"}, Environment{Hosted: true})
	if err != nil {
		t.Fatal(err)
	}
	if o.Env.Shell != Encore || !o.Env.Hosted || o.BatchWindow != 5*time.Millisecond || o.BatchMax != 7 ||
		o.PublicPrefixes[0] != "x." || o.ResumeShare != 0.5 || !o.SingleInstance || o.NATSURL != "nats://n:4222" ||
		o.PublisherKey != "pk" || o.QueueEvents != 4096 {
		t.Fatalf("%+v", o)
	}
	_, err = FromEncore(&config{BatchWindow: "soon"}, nil, Environment{})
	if err == nil || !strings.Contains(err.Error(), "BatchWindow in realtime/config.cue") {
		t.Fatalf("bad duration: %v", err)
	}
	type stale struct{ NoSuchSetting int }
	if _, err := FromEncore(&stale{}, nil, Environment{}); err == nil || !strings.Contains(err.Error(), "go generate") {
		t.Fatalf("stale config: %v", err)
	}
}
