package testutil

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestEventually(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int32
		go func() {
			for range 3 {
				time.Sleep(time.Second)
				n.Add(1)
			}
		}()
		if err := Eventually(context.Background(), time.Minute, func() bool { return n.Load() == 3 }); err != nil {
			t.Fatalf("condition that holds after 3s: %v", err)
		}
		start := time.Now()
		err := Eventually(context.Background(), time.Hour, func() bool { return false })
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != time.Hour {
			t.Fatalf("condition that never holds: %v after %v, want a deadline error after 1h", err, time.Since(start))
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := Eventually(ctx, time.Hour, func() bool { return false }); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled: %v", err)
		}
	})
}

func TestReceive(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 7
	if v := Receive(t, "a value", ch); v != 7 {
		t.Fatalf("got %d", v)
	}
}

func TestLoggerDropsAfterTheTest(t *testing.T) {
	var log = func() func(string) {
		var l func(string)
		t.Run("inner", func(t *testing.T) {
			lg := Logger(t)
			lg.Info("shown only if inner fails")
			l = func(s string) { lg.Info(s) }
		})
		return l
	}()
	log("after the end of inner: dropped, no panic")
	Discard().Error("dropped")
}

func TestFreeAddr(t *testing.T) {
	addr := FreeAddr(t)
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("addr %q", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on the free address: %v", err)
	}
	l.Close()
}
