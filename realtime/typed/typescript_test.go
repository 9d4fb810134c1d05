package typed

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests run the TypeScript generator (client/scripts/channels-ts.mjs) on bundles
// of payload types declared here and type-check a consumer of the generated module with
// the client's tsc: a Go field renamed or retyped must break the TypeScript build of
// code that uses it. They need Node and the client's packages (cd client && npm ci).

// consumer uses the generated helper the way an app does: subscribe, the React hook,
// and the fields of OrderEvent.
const consumer = `import { RealtimeClient, type TypedEvent } from "@encore-realtime/client";
import { useChannel } from "@encore-realtime/client/react";
import { orders, type OrderEvent } from "./channels.gen.js";

const client = new RealtimeClient();
client.subscribe(orders("42"), (ev) => {
  const status: "created" | "shipped" = ev.data.status;
  const total: number = ev.data.totalCents;
  console.log(status, total, ev.seq);
});
export function useOrder(id: string, onEvent: (o: OrderEvent) => void): void {
  useChannel(orders(id), (ev: TypedEvent<OrderEvent>) => onEvent(ev.data));
}
// An untyped channel keeps its unknown data.
client.subscribe("orders.42", (ev) => {
  // @ts-expect-error data is unknown on an untyped channel
  console.log(ev.data.status);
});
`

func TestTypeScriptFollowsGo(t *testing.T) {
	tc := newTSChecker(t)
	{
		type OrderEvent struct {
			ID         string `json:"id"`
			Status     string `json:"status" jsonschema:"enum=created,enum=shipped"`
			TotalCents int64  `json:"totalCents"`
		}
		if out, err := tc.check(Families{NewFamily[OrderEvent]("orders", "orders.{id}")}); err != nil {
			t.Fatalf("the declared type: tsc failed: %v\n%s", err, out)
		}
	}
	for _, c := range []struct {
		name string
		fs   Families
		want string // in tsc's output
	}{
		{"field renamed", func() Families {
			type OrderEvent struct {
				ID         string `json:"id"`
				State      string `json:"state" jsonschema:"enum=created,enum=shipped"`
				TotalCents int64  `json:"totalCents"`
			}
			return Families{NewFamily[OrderEvent]("orders", "orders.{id}")}
		}(), "Property 'status' does not exist on type 'OrderEvent'"},
		{"field retyped", func() Families {
			type OrderEvent struct {
				ID         string `json:"id"`
				Status     string `json:"status" jsonschema:"enum=created,enum=shipped"`
				TotalCents string `json:"totalCents"`
			}
			return Families{NewFamily[OrderEvent]("orders", "orders.{id}")}
		}(), "Type 'string' is not assignable to type 'number'"},
		{"enum widened", func() Families {
			type OrderEvent struct {
				ID         string `json:"id"`
				Status     string `json:"status" jsonschema:"enum=created,enum=shipped,enum=lost"`
				TotalCents int64  `json:"totalCents"`
			}
			return Families{NewFamily[OrderEvent]("orders", "orders.{id}")}
		}(), `Type '"lost"' is not assignable to type '"created" | "shipped"'`},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := tc.check(c.fs)
			if err == nil {
				t.Fatalf("tsc passed; want an error containing %q", c.want)
			}
			if !strings.Contains(out, c.want) {
				t.Fatalf("tsc failed without %q:\n%s", c.want, out)
			}
		})
	}
}

// tsChecker generates a family module into a temporary directory and type-checks
// consumer against it and the client's source.
type tsChecker struct {
	t                   testing.TB
	client, script, tsc string
}

func newTSChecker(t testing.TB) *tsChecker {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	c := &tsChecker{t: t, client: filepath.Join(root, "client")}
	c.script = filepath.Join(c.client, "scripts", "channels-ts.mjs")
	c.tsc = filepath.Join(c.client, "node_modules", ".bin", "tsc")
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("no node on PATH: the TypeScript generator needs it")
	}
	for _, p := range []string{c.tsc, filepath.Join(c.client, "node_modules", "json-schema-to-typescript")} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s missing: run cd client && npm ci", p)
		}
	}
	return c
}

func (c *tsChecker) check(fs Families) (string, error) {
	c.t.Helper()
	dir := c.t.TempDir()
	b, err := fs.Bundle()
	if err != nil {
		c.t.Fatal(err)
	}
	raw, err := b.JSON()
	if err != nil {
		c.t.Fatal(err)
	}
	tsconfig, _ := json.Marshal(map[string]any{
		"compilerOptions": map[string]any{
			"target": "ES2020", "module": "ESNext", "moduleResolution": "Bundler", "lib": []string{"ES2022", "DOM"},
			"jsx": "react-jsx", "strict": true, "noEmit": true, "skipLibCheck": true, "types": []string{},
			"paths": map[string][]string{
				"@encore-realtime/client":       {filepath.Join(c.client, "src", "index.ts")},
				"@encore-realtime/client/react": {filepath.Join(c.client, "src", "react.tsx")},
			},
		},
		"files": []string{"consumer.ts"},
	})
	for name, content := range map[string][]byte{"bundle.json": raw, "consumer.ts": []byte(consumer), "tsconfig.json": tsconfig} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			c.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a bound for a stuck tool, not a speed check
	defer cancel()
	gen := exec.CommandContext(ctx, "node", c.script, "bundle.json", "channels.gen.ts")
	gen.Dir = dir
	if out, err := gen.CombinedOutput(); err != nil {
		c.t.Fatalf("generator: %v\n%s", err, out)
	}
	tsc := exec.CommandContext(ctx, c.tsc, "-p", ".")
	tsc.Dir = dir
	out, err := tsc.CombinedOutput()
	return string(out), err
}
