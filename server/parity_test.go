package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"encore.app/internal/testutil"
)

// The Encore service roots: each declares the endpoints of its routes.
var serviceRoots = []string{"realtime", "flags", "monitoring", "dashboard"}

// encoreEndpoint is one //encore:api declaration of a service root.
type encoreEndpoint struct {
	Service, Endpoint, Method, Path string
	Typed                           bool
}

var apiDirective = regexp.MustCompile(`^//encore:api\s+(.*)$`)

// parseEncoreEndpoints reads the //encore:api lines of the service roots (../<svc>).
func parseEncoreEndpoints(t *testing.T) []encoreEndpoint {
	t.Helper()
	var out []encoreEndpoint
	fset := token.NewFileSet()
	for _, svc := range serviceRoots {
		files, err := filepath.Glob(filepath.Join("..", svc, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range af.Decls {
				fn, ok := d.(*ast.FuncDecl)
				if !ok || fn.Doc == nil {
					continue
				}
				for _, c := range fn.Doc.List {
					m := apiDirective.FindStringSubmatch(c.Text)
					if m == nil {
						continue
					}
					ep := encoreEndpoint{Service: af.Name.Name, Endpoint: fn.Name.Name, Typed: true}
					for _, field := range strings.Fields(m[1]) {
						switch {
						case field == "raw":
							ep.Typed = false
						case strings.HasPrefix(field, "method="):
							ep.Method = strings.TrimPrefix(field, "method=")
						case strings.HasPrefix(field, "path="):
							ep.Path = strings.TrimPrefix(field, "path=")
						case field == "public" || field == "auth" || field == "private":
						default:
							t.Errorf("%s %s: unexpected directive field %q", f, fn.Name.Name, field)
						}
					}
					if fn.Recv != nil {
						t.Errorf("%s %s: endpoints are package-level functions (Encore generates method wrappers only in encore.gen.go)", f, fn.Name.Name)
					}
					out = append(out, ep)
				}
			}
		}
	}
	return out
}

// Every route of the table that is not standalone-only is declared by its service,
// with the same method, path and kind, and nothing else is declared; every
// standalone-only route says why.
func TestEncoreEndpointsMatchRoutes(t *testing.T) {
	declared := parseEncoreEndpoints(t)
	if len(declared) < 10 {
		t.Fatalf("found only %d //encore:api declarations", len(declared))
	}
	var want []encoreEndpoint
	for _, r := range Routes() {
		if r.Only != "" {
			if !strings.HasPrefix(r.Only, "standalone: ") || r.Service != "" {
				t.Errorf("%s: Only must be \"standalone: why\" and the route have no service", r.Pattern())
			}
			continue
		}
		want = append(want, encoreEndpoint{Service: r.Service, Endpoint: r.Endpoint, Method: r.Method, Path: r.EncorePath(), Typed: r.Typed})
	}
	key := func(e encoreEndpoint) string {
		return fmt.Sprintf("%s.%s %s %s typed=%v", e.Service, e.Endpoint, e.Method, e.Path, e.Typed)
	}
	var got, exp []string
	for _, e := range declared {
		got = append(got, key(e))
	}
	for _, e := range want {
		exp = append(exp, key(e))
	}
	slices.Sort(got)
	slices.Sort(exp)
	if !slices.Equal(got, exp) {
		t.Errorf("//encore:api declarations differ from server.Routes:\n declared: %s\n routes:   %s",
			strings.Join(got, "\n           "), strings.Join(exp, "\n           "))
	}
}

// The standalone server serves every route of the table on its mux (the Encore
// endpoints hand requests to the same mux), and nothing answers a path outside it.
func TestStandaloneServesEveryRoute(t *testing.T) {
	o, err := parseArgs(t, nil, "-data", t.TempDir(), "-pprof", "-dev-mint")
	if err != nil {
		t.Fatal(err)
	}
	o.Env.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := testutil.Context(t)
	s, err := New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, r := range Routes() {
		path := strings.ReplaceAll(r.Path, "{name}", "realtime-streaming-v2")
		req := httptest.NewRequest(r.Method, path, nil)
		if _, pattern := s.mux.Handler(req); pattern != r.Pattern() {
			t.Errorf("%s %s: served by %q, want %q", r.Method, path, pattern, r.Pattern())
		}
	}
}

// cueDefaults reads realtime/defaults.cue: "Key: *value | type" per setting.
func cueDefaults(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", GenDefaultsCUE))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := regexp.MustCompile(`^(\w+): \*(.*) \| [^|]+$`)
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := line.FindStringSubmatch(sc.Text()); m != nil {
			out[m[1]] = m[2]
		}
	}
	return out
}

// encoreConfigType is the realtime service's Config struct as declared in
// realtime/config_gen.go (read with go/ast: the package itself only runs under Encore).
func encoreConfigType(t *testing.T) reflect.Type {
	t.Helper()
	af, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", GenConfigGo), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]reflect.Type{"string": reflect.TypeOf(""), "int": reflect.TypeOf(0), "float64": reflect.TypeOf(0.0),
		"bool": reflect.TypeOf(false), "[]string": reflect.TypeOf([]string(nil))}
	var fields []reflect.StructField
	ast.Inspect(af, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "Config" {
			return true
		}
		for _, f := range ts.Type.(*ast.StructType).Fields.List {
			var tn string
			switch x := f.Type.(type) {
			case *ast.Ident:
				tn = x.Name
			case *ast.ArrayType:
				tn = "[]" + x.Elt.(*ast.Ident).Name
			}
			typ, ok := types[tn]
			if !ok {
				t.Fatalf("Config.%s: unexpected type %s", f.Names[0].Name, tn)
			}
			fields = append(fields, reflect.StructField{Name: f.Names[0].Name, Type: typ})
		}
		return false
	})
	if len(fields) == 0 {
		t.Fatal("no Config struct in " + GenConfigGo)
	}
	return reflect.StructOf(fields)
}

// The Encore config path and the standalone flags build the same Options: from the
// CUE defaults as from no flags at all, and from a changed value of every setting as
// from the matching flag.
func TestEncoreConfigAndFlagsBuildTheSameOptions(t *testing.T) {
	typ := encoreConfigType(t)
	defs := cueDefaults(t)
	fromCUE := func(vals map[string]string) Options {
		t.Helper()
		cfg := reflect.New(typ)
		for i := range typ.NumField() {
			name := typ.Field(i).Name
			v, ok := vals[name]
			if !ok {
				t.Fatalf("%s has no default in %s", name, GenDefaultsCUE)
			}
			if err := json.Unmarshal([]byte(v), cfg.Elem().Field(i).Addr().Interface()); err != nil {
				t.Fatalf("%s: CUE value %s: %v", name, v, err)
			}
		}
		o, err := FromEncore(cfg.Interface(), nil, Environment{})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	compare := func(what string, enc, std Options) {
		t.Helper()
		for _, s := range Settings() {
			if s.CUE == "" || s.Flag == "" {
				continue
			}
			if a, b := s.Value(&enc), s.Value(&std); a != b {
				t.Errorf("%s: %s is %q from the Encore config, %q from the flags", what, s.Field, a, b)
			}
		}
	}
	std, err := parseArgs(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	compare("defaults", fromCUE(defs), std)

	// Change every setting at once: a flag for the standalone server, the same value in
	// the Encore config.
	vals := map[string]string{}
	var args []string
	for _, s := range Settings() {
		if s.CUE == "" {
			continue
		}
		var text, cue string
		switch s.Kind {
		case "string":
			text = "x-" + s.CUE
			if s.Field == "Bus" {
				text = BusNATS
			}
			cue = strconv.Quote(text)
		case "list":
			text, cue = "a.,b:", `["a.","b:"]`
		case "bool":
			b, _ := strconv.ParseBool(s.Default)
			text = strconv.FormatBool(!b)
			cue = text
		case "int":
			n, _ := strconv.Atoi(s.Default)
			text = strconv.Itoa(n + 3)
			cue = text
		case "float":
			text, cue = "0.5", "0.5"
		case "duration":
			d, _ := time.ParseDuration(s.Default)
			text = (d + 3*time.Second).String()
			cue = strconv.Quote(text)
		}
		vals[s.CUE] = cue
		if s.Flag != "" {
			args = append(args, "-"+s.Flag+"="+text)
		}
	}
	std, err = parseArgs(t, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	compare("every setting changed", fromCUE(vals), std)
}
