package server

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"strings"

	"encore.app/flags/flag"
	"encore.app/realtime/auth"
	"encore.app/realtime/origin"
)

// Bus kinds (Options.Bus). A new kind is a constant here, a case in Validate, in
// EffectiveBus and in openBackend (backend.go).
const (
	BusAuto     = "auto"     // BusNATS or BusPostgres, after EffectiveBus
	BusNATS     = "nats"     // NATS JetStream: embedded, or the external NATS of NATSURL
	BusPostgres = "postgres" // tables in a PostgreSQL database: PostgresURL or Env.Postgres
)

// ErrSingleInstance is the multi-instance guard's refusal (wrapped by Validate).
var ErrSingleInstance = errors.New("embedded NATS outside local development")

// EffectiveBus is the bus the server runs on: Bus, or for BusAuto, nats when the
// NATS URL is set, else postgres when there is a database (PostgresURL, or the
// shell's Env.Postgres: always under Encore), else nats (the embedded server). It is
// "" when auto cannot choose (both URLs set), which Validate reports.
func (o *Options) EffectiveBus() string {
	if o.Bus != BusAuto {
		return o.Bus
	}
	switch {
	case o.NATSURL != "" && o.PostgresURL != "":
		return ""
	case o.NATSURL != "":
		return BusNATS
	case o.hasDatabase():
		return BusPostgres
	}
	return BusNATS
}

func (o *Options) hasDatabase() bool { return o.PostgresURL != "" || o.Env.Postgres != nil }

// Embedded reports whether the server runs its own NATS server (the NATS bus without
// a NATS URL).
func (o *Options) Embedded() bool { return o.EffectiveBus() == BusNATS && o.NATSURL == "" }

// Validate checks every setting and returns the first problems found, each naming the
// setting the way the user sets it (flag and environment variable, or CUE key and
// secret, after Env.Shell).
func (o *Options) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &settingError{o.name(field), fmt.Errorf(format, args...)})
	}
	for _, s := range Settings() {
		if s.belowMin(o) {
			bad(s.Field, "%s is below the minimum %s", s.Value(o), s.Min)
		}
	}
	switch o.Bus {
	case BusAuto, BusNATS, BusPostgres:
	default:
		bad("Bus", "unknown bus %q (known: %s, %s, %s)", o.Bus, BusAuto, BusNATS, BusPostgres)
	}
	errs = append(errs, o.validateBus()...)
	if o.ResumeShare >= 1 {
		bad("ResumeShare", "%g: must be below 1", o.ResumeShare)
	}
	switch o.LogFormat {
	case "text", "json":
	default:
		bad("LogFormat", "%q: text or json", o.LogFormat)
	}
	switch strings.ToLower(o.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("LogLevel", "%q: debug, info, warn or error", o.LogLevel)
	}
	if o.TokenKeys != "" {
		if _, err := auth.ParseKeys(o.TokenKeys); err != nil {
			bad("TokenKeys", "%v", err)
		}
	}
	if o.AdminKey != "" && len(o.AdminKey) < flag.MinAdminKeyLen {
		bad("AdminKey", "shorter than %d bytes", flag.MinAdminKeyLen)
	}
	errs = append(errs, o.validateKeys()...)
	if _, err := origin.New(o.Origins, nil); err != nil {
		bad("Origins", "%v", err)
	}
	if len(o.Instance) > 128 {
		bad("Instance", "longer than 128 bytes")
	}
	if o.Env.Shell == Encore && !o.Env.Hosted && watched(o.DataDir) {
		bad("DataDir", "%q is inside the app, where encore run reloads the app whenever the embedded NATS writes a file "+
			"(meta.sum looks like go.sum to it): use a hidden directory (.realtime) or a path outside the app", o.DataDir)
	}
	if o.Env.Hosted && o.DevMint {
		bad("DevMint", "the dev token endpoint mints tokens for any user: local development only")
	}
	return errors.Join(errs...)
}

// validateBus checks the bus settings against the bus they select, and the
// multi-instance guard: deployed (Env.Hosted), an embedded NATS is private to its
// instance, so it is refused unless SingleInstance says there is one instance. The
// Postgres bus and an external NATS are shared by every instance.
func (o *Options) validateBus() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &settingError{o.name(field), fmt.Errorf(format, args...)})
	}
	switch o.EffectiveBus() {
	case "":
		bad("Bus", "%s and %s are both set: choose the bus (%s or %s)", o.name("NATSURL"), o.name("PostgresURL"), BusNATS, BusPostgres)
	case BusPostgres:
		if !o.hasDatabase() {
			if o.Env.Shell == Encore {
				bad("Bus", "%s: the shell provides no database", BusPostgres)
			} else {
				bad("Bus", "%s needs %s", BusPostgres, o.name("PostgresURL"))
			}
		}
		if o.NATSURL != "" {
			bad("NATSURL", "set, but the bus is %s (%s): remove one", BusPostgres, o.name("Bus"))
		}
		if o.NATSListen != "" {
			bad("NATSListen", "there is no NATS server with the Postgres bus")
		}
		if !o.natsAuth().IsZero() {
			bad("NATSCreds", "NATS credentials and TLS options (%s, ...) with the Postgres bus", o.name("NATSCreds"))
		}
		if o.Replicas != 1 {
			bad("Replicas", "%d: stream replicas are NATS's; the Postgres bus has the database's durability", o.Replicas)
		}
	case BusNATS:
		if o.PostgresURL != "" {
			bad("PostgresURL", "set, but the bus is %s (%s): remove one", BusNATS, o.name("Bus"))
		}
		if o.NATSURL != "" {
			break
		}
		a := o.natsAuth()
		switch {
		case o.NATSListen == "" && !a.IsZero():
			bad("NATSURL", "credentials and TLS options (%s, ...) need an external NATS, or %s (the embedded server's "+
				"listener then requires %s, or %s and %s)", o.name("NATSCreds"), o.name("NATSListen"), o.name("NATSToken"),
				o.name("NATSUser"), o.name("NATSPassword"))
		case a.CredsFile != "" || a.NKeyFile != "" || a.TLSCA != "" || a.TLSCert != "" || a.TLSKey != "":
			bad("NATSListen", "the embedded server's listener takes %s, or %s and %s; credential files and TLS "+
				"options are for an external NATS (%s)", o.name("NATSToken"), o.name("NATSUser"), o.name("NATSPassword"), o.name("NATSURL"))
		case o.NATSListen != "" && !loopback(o.NATSListen) && a.Token == "" && a.User == "":
			bad("NATSListen", "%q is not a loopback address, and the embedded NATS has no authentication: whoever "+
				"reaches it could publish events past the publisher key and delete the stream. Set %s (or %s and %s); "+
				"other instances join with %s nats://HOST:PORT and the same setting", o.NATSListen, o.name("NATSToken"),
				o.name("NATSUser"), o.name("NATSPassword"), o.name("NATSURL"))
		}
		if o.Env.Hosted && !o.SingleInstance {
			errs = append(errs, fmt.Errorf("%w: every instance would run its own bus, and the Encore subscription "+
				"delivers each event to one instance only, so clients of the others would miss it. Use the app's "+
				"database (%s: %q or %q, the default), set %s to the NATS every instance shares (nats://host:4222), "+
				"or, if this app runs exactly one instance, set %s",
				ErrSingleInstance, o.name("Bus"), BusPostgres, BusAuto, o.name("NATSURL"), o.name("SingleInstance")+": true"))
		}
	}
	if ns := o.Env.Namespace; ns != "" && (len(ns) > 64 || strings.ContainsFunc(ns, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	})) {
		errs = append(errs, fmt.Errorf("server: namespace %q: at most 64 of a-z, 0-9, - and _", ns))
	}
	return errs
}

// credentials are the settings that are either all set (a keyed server) or all empty
// (dev mode): a keyed server never falls back to a documented dev key.
var credentials = []string{"TokenKeys", "PublisherKey", "AdminKey"}

// DevMode reports whether o runs in dev mode: local (not hosted) and without any key,
// so that the fixed dev keys apply. Validate keeps dev mode on loopback.
func (o *Options) DevMode() bool {
	return !o.Env.Hosted && o.TokenKeys == "" && o.PublisherKey == "" && o.AdminKey == ""
}

// validateKeys: no shared default secret outside dev mode. A server with any key needs
// every key (else the missing ones would be the documented dev keys); the dev keys
// themselves are never accepted as configured keys; dev mode listens on loopback only.
func (o *Options) validateKeys() []error {
	var errs []error
	var set, missing []string
	for _, f := range credentials {
		if lookup(f).value(o).String() != "" {
			set = append(set, o.name(f))
		} else {
			missing = append(missing, o.name(f))
		}
	}
	if !o.Env.Hosted && len(set) > 0 && len(missing) > 0 {
		errs = append(errs, fmt.Errorf("missing %s: with a key set (%s) every key must be set, or none for dev mode "+
			"(loopback only, fixed dev keys)", strings.Join(missing, " and "), strings.Join(set, ", ")))
	}
	if o.AdminKey == DevAdminKey {
		errs = append(errs, &settingError{o.name("AdminKey"), errors.New("is the documented dev key: choose a secret of your own (openssl rand -hex 32)")})
	}
	if o.PublisherKey == DevPublisherKey {
		errs = append(errs, &settingError{o.name("PublisherKey"), errors.New("is the documented dev key: choose a secret of your own (openssl rand -hex 32)")})
	}
	if o.DevMode() && o.Env.Shell == Standalone {
		for _, f := range []string{"Addr", "NATSListen"} {
			v := lookup(f).value(o).String()
			if v != "" && !loopback(v) {
				errs = append(errs, &settingError{o.name(f), fmt.Errorf("%q is not a loopback address: dev mode (no keys: anyone may publish "+
					"with the key %q and change flags with %q) serves this machine only. Listen on 127.0.0.1, or set %s",
					v, DevPublisherKey, DevAdminKey, strings.Join(missing, ", "))})
			}
		}
	}
	return errs
}

// loopback reports whether a listen address (host:port) is on loopback only: a
// loopback IP or "localhost". An empty host (":4000") is every interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// watched reports whether encore run's file watcher sees a relative data directory: it
// skips hidden directories (and node_modules) only.
func watched(dir string) bool {
	if filepath.IsAbs(dir) {
		return false // outside the app, or the user's explicit choice
	}
	for _, part := range strings.Split(filepath.ToSlash(filepath.Clean(dir)), "/") {
		if part == ".." {
			return false
		}
		if len(part) > 1 && part[0] == '.' || part == "node_modules" {
			return false
		}
	}
	return true
}

// FromEncore returns the options of the Encore shell: the defaults, then every field of
// cfg (the realtime service's Config, realtime/config_gen.go) by its CUE key, then every
// field of secrets by its secret name, with env. Durations are CUE strings ("250ms").
// Both cfg and secrets are pointers to structs; a field that names no setting is an
// error (the generated files are out of date).
func FromEncore(cfg, secrets any, env Environment) (Options, error) {
	o := Defaults()
	env.Shell = Encore
	o.Env = env
	byCUE, bySecret := map[string]Setting{}, map[string]Setting{}
	for _, s := range Settings() {
		if s.CUE != "" {
			byCUE[s.CUE] = s
		}
		if s.Secret != "" {
			bySecret[s.Secret] = s
		}
	}
	var errs []error
	apply := func(src any, by map[string]Setting, what string) {
		v := reflect.ValueOf(src)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
			errs = append(errs, fmt.Errorf("server: %s must be a pointer to a struct, got %T", what, src))
			return
		}
		v = v.Elem()
		for i := range v.NumField() {
			name := v.Type().Field(i).Name
			s, ok := by[name]
			if !ok {
				errs = append(errs, fmt.Errorf("server: %s field %s is no setting: run go generate ./server", what, name))
				continue
			}
			f := v.Field(i)
			dst := s.value(&o)
			switch {
			case s.Kind == "duration" && f.Kind() == reflect.String:
				if err := s.set(&o, f.String()); err != nil {
					errs = append(errs, &settingError{s.Name(Encore), err})
				}
			case f.Type().ConvertibleTo(dst.Type()):
				dst.Set(f.Convert(dst.Type()))
			default:
				errs = append(errs, fmt.Errorf("server: %s field %s is a %s, setting %s a %s: run go generate ./server",
					what, name, f.Type(), s.Field, dst.Type()))
			}
		}
	}
	if cfg != nil {
		apply(cfg, byCUE, "config")
	}
	if secrets != nil {
		apply(secrets, bySecret, "secrets")
	}
	return o, errors.Join(errs...)
}
