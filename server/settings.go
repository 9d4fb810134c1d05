package server

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Setting is one field of Options as its tags declare it.
type Setting struct {
	Field   string // Go field name
	Flag    string // cmd/realtimed flag, without the dash ("" = none)
	Env     string // environment variable of the flag ("" = none)
	CUE     string // key in the Encore config ("" = none)
	Secret  string // Encore secret ("" = none)
	Default string // default in flag syntax ("" = the zero value)
	Min     string // smallest accepted value ("" = no bound)
	Only    string // "standalone: why" or "encore: why"
	Help    string
	Kind    string // "string", "int", "float", "bool", "duration" or "list"

	index int // field index in Options
}

var (
	settingsOnce sync.Once
	settings     []Setting
	settingsErr  error
)

// Settings returns every setting, in the order of the Options fields.
func Settings() []Setting {
	settingsOnce.Do(func() { settings, settingsErr = parseSettings() })
	if settingsErr != nil {
		panic(settingsErr) // a tag error: caught by the package's tests
	}
	return settings
}

func parseSettings() ([]Setting, error) {
	t := reflect.TypeOf(Options{})
	var out []Setting
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("setting") == "-" {
			continue
		}
		s := Setting{
			Field: f.Name, Flag: f.Tag.Get("flag"), Env: f.Tag.Get("env"), CUE: f.Tag.Get("cue"),
			Secret: f.Tag.Get("secret"), Default: f.Tag.Get("default"), Min: f.Tag.Get("min"),
			Only: f.Tag.Get("only"), Help: f.Tag.Get("help"), index: i,
		}
		switch {
		case f.Type == reflect.TypeOf(time.Duration(0)):
			s.Kind = "duration"
		case f.Type.Kind() == reflect.String:
			s.Kind = "string"
		case f.Type.Kind() == reflect.Int:
			s.Kind = "int"
		case f.Type.Kind() == reflect.Float64:
			s.Kind = "float"
		case f.Type.Kind() == reflect.Bool:
			s.Kind = "bool"
		case f.Type == reflect.TypeOf([]string(nil)):
			s.Kind = "list"
		default:
			return nil, fmt.Errorf("server: setting %s: unsupported type %s", f.Name, f.Type)
		}
		if s.Help == "" {
			return nil, fmt.Errorf("server: setting %s has no help", f.Name)
		}
		standalone := s.Flag != ""
		encore := s.CUE != "" || s.Secret != ""
		switch {
		case standalone && encore && s.Only != "":
			return nil, fmt.Errorf("server: setting %s is in both shells but says only %q", f.Name, s.Only)
		case !standalone && !strings.HasPrefix(s.Only, "encore: "):
			return nil, fmt.Errorf("server: setting %s has no flag: say why with only:\"encore: ...\"", f.Name)
		case !encore && !strings.HasPrefix(s.Only, "standalone: "):
			return nil, fmt.Errorf("server: setting %s has no CUE key or secret: say why with only:\"standalone: ...\"", f.Name)
		case (s.Flag == "") != (s.Env == ""):
			return nil, fmt.Errorf("server: setting %s: a flag and its environment variable go together", f.Name)
		}
		var probe Options
		if err := s.set(&probe, s.Default); err != nil {
			return nil, fmt.Errorf("server: setting %s: default: %w", f.Name, err)
		}
		if s.Min != "" {
			if err := s.set(&probe, s.Min); err != nil || s.Kind == "string" || s.Kind == "bool" || s.Kind == "list" {
				return nil, fmt.Errorf("server: setting %s: bad min %q", f.Name, s.Min)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// lookup returns the setting of a field; it panics on a name that is not a setting
// (a programming error the tests catch).
func lookup(field string) Setting {
	for _, s := range Settings() {
		if s.Field == field {
			return s
		}
	}
	panic("server: no setting " + field)
}

func (s Setting) value(o *Options) reflect.Value { return reflect.ValueOf(o).Elem().Field(s.index) }

// set parses text (flag syntax) into the field of o.
func (s Setting) set(o *Options, text string) error {
	v := s.value(o)
	switch s.Kind {
	case "string":
		v.SetString(text)
	case "list":
		v.Set(reflect.ValueOf(splitList(text)))
	case "bool":
		if text == "" {
			v.SetBool(false)
			return nil
		}
		b, err := strconv.ParseBool(text)
		if err != nil {
			return fmt.Errorf("%q is not true or false", text)
		}
		v.SetBool(b)
	case "int":
		if text == "" {
			v.SetInt(0)
			return nil
		}
		n, err := strconv.Atoi(text)
		if err != nil {
			return fmt.Errorf("%q is not an integer", text)
		}
		v.SetInt(int64(n))
	case "float":
		if text == "" {
			v.SetFloat(0)
			return nil
		}
		n, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", text)
		}
		v.SetFloat(n)
	case "duration":
		if text == "" {
			v.SetInt(0)
			return nil
		}
		d, err := time.ParseDuration(text)
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 250ms, 10s, 24h)", text)
		}
		v.SetInt(int64(d))
	}
	return nil
}

// Value formats the setting's value in o in flag syntax.
func (s Setting) Value(o *Options) string {
	v := s.value(o)
	switch s.Kind {
	case "list":
		return strings.Join(v.Interface().([]string), ",")
	case "duration":
		return time.Duration(v.Int()).String()
	case "float":
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	default:
		return fmt.Sprint(v.Interface())
	}
}

// belowMin reports whether the field of o is below its Min.
func (s Setting) belowMin(o *Options) bool {
	if s.Min == "" {
		return false
	}
	var m Options
	_ = s.set(&m, s.Min)
	a, b := s.value(o), s.value(&m)
	if s.Kind == "float" {
		return a.Float() < b.Float()
	}
	return a.Int() < b.Int()
}

// Name is how the user of shell sets s: "-batch-window ($REALTIME_BATCH_WINDOW)",
// "BatchWindow in realtime/config.cue" or "the secret PublisherKey".
func (s Setting) Name(shell Shell) string {
	if shell == Encore {
		switch {
		case s.Secret != "":
			return "the secret " + s.Secret
		case s.CUE != "":
			return s.CUE + " in realtime/config.cue"
		}
	}
	if s.Flag != "" {
		return "-" + s.Flag + " ($" + s.Env + ")"
	}
	return s.Field
}

// name is the user's name of field for o's shell.
func (o *Options) name(field string) string { return lookup(field).Name(o.Env.Shell) }

// settingError names the setting a bad value belongs to.
type settingError struct {
	name string
	err  error
}

func (e *settingError) Error() string { return e.name + ": " + e.err.Error() }
func (e *settingError) Unwrap() error { return e.err }

// RegisterFlags adds a flag for every standalone setting to fs, with o's current value
// as the flag's default. An environment variable that is set (getenv) replaces that
// default first; a bad one is returned as an error naming the variable. getenv nil
// means os.LookupEnv.
func RegisterFlags(fs *flag.FlagSet, o *Options, getenv func(string) (string, bool)) error {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	var errs []error
	for _, s := range Settings() {
		if s.Flag == "" {
			continue
		}
		if v, ok := getenv(s.Env); ok {
			if err := s.set(o, v); err != nil {
				errs = append(errs, &settingError{"$" + s.Env, err})
			}
		}
		usage := s.Help + " ($" + s.Env + ")"
		switch p := s.value(o).Addr().Interface().(type) {
		case *string:
			fs.StringVar(p, s.Flag, *p, usage)
		case *int:
			fs.IntVar(p, s.Flag, *p, usage)
		case *float64:
			fs.Float64Var(p, s.Flag, *p, usage)
		case *bool:
			fs.BoolVar(p, s.Flag, *p, usage)
		case *time.Duration:
			fs.DurationVar(p, s.Flag, *p, usage)
		default: // a list
			fs.Var(&flagValue{s: s, o: o}, s.Flag, usage)
		}
		if s.Sensitive() {
			fs.Lookup(s.Flag).DefValue = "" // -h never prints a secret taken from the environment
		}
	}
	return errors.Join(errs...)
}

// Sensitive reports whether the setting's value is a secret (keys, NATS credentials
// and the NATS and Postgres URLs, which may carry a password): -h does not show it.
func (s Setting) Sensitive() bool {
	switch s.Field {
	case "NATSPassword", "NATSToken", "PostgresURL":
		return true
	}
	return s.Secret != ""
}

// flagValue is the flag.Value of a list setting (comma-separated).
type flagValue struct {
	s Setting
	o *Options
}

func (f *flagValue) String() string {
	if f == nil || f.o == nil {
		return ""
	}
	return f.s.Value(f.o)
}

func (f *flagValue) Set(v string) error { return f.s.set(f.o, v) }

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
