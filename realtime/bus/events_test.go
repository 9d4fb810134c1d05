package bus

import (
	"testing"
	"time"
)

// Both buses resolve MaxAge, MaxBytes and DupWindow alike (retention); only the word
// for an unlimited size differs (-1 for JetStream, 0 for Postgres).
func TestRetentionDefaults(t *testing.T) {
	for _, tc := range []struct {
		age   time.Duration
		bytes int64
		dup   time.Duration

		wantAge   time.Duration
		wantBytes int64 // with unlimitedBytes -1
		wantDup   time.Duration
	}{
		{0, 0, 0, DefaultMaxAge, DefaultMaxBytes, DefaultDupWindow},
		{-1, -1, 0, 0, -1, DefaultDupWindow},                                                  // unlimited: no clamp
		{500 * time.Millisecond, 100, 0, 500 * time.Millisecond, 100, 500 * time.Millisecond}, // window at most MaxAge
		{time.Hour, 100, time.Second, time.Hour, 100, time.Second},
	} {
		age, bytes, dup := retention(tc.age, tc.bytes, tc.dup, -1)
		if age != tc.wantAge || bytes != tc.wantBytes || dup != tc.wantDup {
			t.Errorf("retention(%v, %d, %v) = %v, %d, %v; want %v, %d, %v",
				tc.age, tc.bytes, tc.dup, age, bytes, dup, tc.wantAge, tc.wantBytes, tc.wantDup)
		}
	}
	js := Config{DataDir: "x", MaxAge: 500 * time.Millisecond, MaxBytes: -1}
	pg := PostgresConfig{MaxAge: 500 * time.Millisecond, MaxBytes: -1}
	if err := js.normalize(); err != nil {
		t.Fatal(err)
	}
	if err := pg.normalize(); err != nil {
		t.Fatal(err)
	}
	if js.DupWindow != 500*time.Millisecond || pg.DupWindow != 500*time.Millisecond || js.MaxBytes != -1 || pg.MaxBytes != 0 {
		t.Fatalf("JetStream %v %d, Postgres %v %d", js.DupWindow, js.MaxBytes, pg.DupWindow, pg.MaxBytes)
	}
}
