package pgtest

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"encore.app/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(Main(m), testutil.LeakOptions()...) }

func TestSharedDBsAreFresh(t *testing.T) {
	ctx := testutil.Context(t)
	a, b := DB(t), DB(t)
	if a == b {
		t.Fatalf("same database twice: %s", a)
	}
	c, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE TABLE x (n int)"); err != nil {
		t.Fatal(err)
	}
	c2, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	if _, err := c2.Exec(ctx, "CREATE TABLE x (n int)"); err != nil {
		t.Fatalf("second database not fresh: %v", err)
	}
}

func TestCrashAndRestartKeepCommitted(t *testing.T) {
	s := Start(t, Options{})
	ctx := testutil.Context(t)
	url := s.DB(t)
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE x (n int); INSERT INTO x VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	s.Crash()
	if err := c.Ping(ctx); err == nil {
		t.Fatal("ping after crash succeeded")
	}
	c.Close(ctx)
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	c, err = pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM x").Scan(&n); err != nil || n != 2 {
		t.Fatalf("after crash recovery: %d rows, %v", n, err)
	}
	s.Stop()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
}
