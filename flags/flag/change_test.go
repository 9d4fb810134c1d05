package flag

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

var decodeCases = []struct {
	name    string
	body    string
	wantErr string // substring; "" = valid
}{
	{"kill", `{"enabled":false}`, ""},
	{"rollout and reason", `{"rollout":30,"reason":"canary"}`, ""},
	{"overrides", `{"setOverrides":{"alice":true,"bob":false},"removeOverrides":["carol"]}`, ""},
	{"clear", `{"clearOverrides":true}`, ""},
	{"if revision", `{"enabled":true,"ifRevision":12}`, ""},
	{"empty object", `{}`, "sets nothing"},
	{"empty body", ``, "empty body"},
	{"not json", `enabled=false`, "malformed JSON"},
	{"truncated", `{"enabled":`, "truncated"},
	{"unknown field", `{"enabled":true,"rolout":5}`, `unknown field "rolout"`},
	{"rollout too big", `{"rollout":101}`, "percentage from 0 to 100"},
	{"rollout negative", `{"rollout":-1}`, "percentage from 0 to 100"},
	{"rollout fraction", `{"rollout":30.5}`, "percentage from 0 to 100"},
	{"rollout exponent", `{"rollout":1e2}`, "percentage from 0 to 100"},
	{"rollout string", `{"rollout":"30"}`, "percentage from 0 to 100"},
	{"enabled string", `{"enabled":"yes"}`, "wrong type"},
	{"negative revision", `{"enabled":true,"ifRevision":-3}`, "ifRevision"},
	{"trailing data", `{"enabled":true} {"enabled":false}`, "after the JSON object"},
	{"array", `[{"enabled":true}]`, "wrong type"},
	{"empty user", `{"setOverrides":{"":true}}`, "override user ID"},
	{"long user", `{"setOverrides":{"` + strings.Repeat("u", MaxUserIDLen+1) + `":true}}`, "override user ID"},
	{"long reason", `{"enabled":true,"reason":"` + strings.Repeat("r", MaxReasonLen+1) + `"}`, "reason"},
	{"invalid utf8", "{\"enabled\":true,\"reason\":\"\xff\"}", "UTF-8"},
	{"too large", `{"enabled":true,"reason":"` + strings.Repeat(" ", MaxChangeBytes) + `"}`, "larger than"},
}

func TestDecodeChange(t *testing.T) {
	for _, tt := range decodeCases {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DecodeChange(strings.NewReader(tt.body))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("DecodeChange: %v", err)
				}
				if err := c.Validate(); err != nil {
					t.Fatalf("decoded change does not validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %q as %+v", clip(tt.body), c)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q: want ErrInvalid containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecodeChangeFields(t *testing.T) {
	c, err := DecodeChange(strings.NewReader(`{"enabled":true,"rollout":0,"description":"d","ifRevision":0}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Enabled == nil || !*c.Enabled || c.Rollout == nil || *c.Rollout != 0 || *c.Description != "d" ||
		c.IfRevision == nil || *c.IfRevision != 0 {
		t.Fatalf("decoded %+v", c)
	}
}

func TestApplyOverrideLimit(t *testing.T) {
	cur := Flag{Name: "ff", Enabled: true, Rollout: 100, Overrides: map[string]bool{}}
	for i := range MaxOverrides {
		cur.Overrides[strconv.Itoa(i)] = true
	}
	c := Change{SetOverrides: map[string]bool{"one-more": true}}
	if _, err := c.apply(cur, true, "a", time.Now()); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "overrides") {
		t.Fatalf("override %d: %v, want ErrInvalid", MaxOverrides+1, err)
	}
	if len(cur.Overrides) != MaxOverrides {
		t.Fatal("apply modified the current flag")
	}
}

// FuzzDecodeChange: any input either decodes to a change that validates and applies
// to a valid flag, or fails with ErrInvalid; it never panics.
func FuzzDecodeChange(f *testing.F) {
	for _, tt := range decodeCases {
		f.Add([]byte(tt.body))
	}
	base := Flag{Name: StreamingV2, Enabled: true, Rollout: 100}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := DecodeChange(strings.NewReader(string(body)))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("decoded change does not validate: %v", err)
		}
		next, err := c.apply(base, true, "fuzz", time.Unix(0, 0))
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrConflict) {
				t.Fatalf("apply: %v", err)
			}
			return
		}
		if err := next.Validate(); err != nil {
			t.Fatalf("applied flag invalid: %v", err)
		}
	})
}
