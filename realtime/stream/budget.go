package stream

import (
	"bufio"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"encore.app/realtime/protocol"
)

// budget is the instance's one bound on the memory its connections' queues hold
// (Config.QueueBudget): every frame queued and not yet on its sockets counts once,
// however many connections share it (frame.hold), plus a fixed cost per queue entry
// (itemCost) and per replay job. When the total passes the budget, the enforcer closes
// the connections that hold the most unsent data (their own view: the bytes of every
// frame queued to them), largest first, with 4105 and a retry hint, until it is back
// under three quarters of the budget: memory stays bounded however many sockets stop
// reading, and the connections that keep up are the last to go. A closed connection's
// queue, and the frames its writer took but did not start, are released at once.
type budget struct {
	limit int64
	low   int64
	used  atomic.Int64
	kick  chan struct{} // capacity 1, never closed
}

func newBudget(limit int64) *budget {
	return &budget{limit: limit, low: limit / 4 * 3, kick: make(chan struct{}, 1)}
}

// add counts n bytes queued; past the limit it wakes the enforcer (never blocks).
func (b *budget) add(n int) {
	if b.used.Add(int64(n)) > b.limit {
		signal(b.kick)
	}
}

// sub counts n bytes written or dropped.
func (b *budget) sub(n int) {
	if n != 0 {
		b.used.Add(-int64(n))
	}
}

// enforceBudget runs on its own goroutine (owner: Engine, Start to Close).
func (e *Engine) enforceBudget() {
	b := e.budget
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-b.kick:
		}
		for b.used.Load() > b.limit && e.ctx.Err() == nil {
			if closed, releasing := e.shed(); closed == 0 && releasing == 0 {
				break // nothing closable, and nothing on its way out
			}
			time.Sleep(time.Millisecond) // let the closes free their queues
		}
	}
}

// shed closes the connections holding the most unsent bytes until the budget's low
// mark would be reached, and returns how many it closed and the unsent bytes of
// connections already closing. Those are on their way out (their writers release what
// they took when they next run, which a busy machine may delay): they count as freed,
// so that a close still in progress never makes the enforcer close more connections,
// the ones that keep up among them.
func (e *Engine) shed() (closed int, releasing int64) {
	b := e.budget
	type holder struct {
		c *Client
		n int64
	}
	var hs []holder
	for _, c := range e.snapshotClients() {
		n := c.unsent.Load()
		if n <= 0 {
			continue
		}
		if c.closing() {
			releasing += n
		} else {
			hs = append(hs, holder{c, n})
		}
	}
	excess := b.used.Load() - b.low - releasing
	if excess <= 0 {
		return 0, releasing
	}
	slices.SortFunc(hs, func(a, b holder) int {
		switch {
		case a.n > b.n:
			return -1
		case a.n < b.n:
			return 1
		}
		return 0
	})
	for _, h := range hs {
		if excess <= 0 {
			break
		}
		if h.c.closeForBudget() {
			closed++
			excess -= h.n
		}
	}
	e.metrics.budgetCloses.Add(uint64(closed))
	return closed, releasing
}

// closeForBudget closes c with 4105, dropping its queue; false when it was already
// closing.
func (c *Client) closeForBudget() bool {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return false
	}
	c.requestCloseLocked(protocol.CloseQueueBudget, "server queue budget exceeded", c.e.budgetRetryHint(),
		DiscQueueBudget, false, DropQueueBudget)
	c.closeQuick = true
	push, gen := c.kickLocked()
	c.mu.Unlock()
	if push {
		c.e.fl.pushReady(c, gen)
	}
	return true
}

// budgetRetryHint is a jittered delay in [RetryMin+RetryMax, 2 x RetryMax], in
// milliseconds: memory pressure takes longer to clear than a slow client's backlog.
func (e *Engine) budgetRetryHint() int64 {
	return e.retryHint() + e.cfg.RetryMax.Milliseconds()
}

// defaultQueueBudget is 1/64 of the memory available to the process (its cgroup's
// limit, else the machine's), between 64 MiB and 1 GiB.
func defaultQueueBudget() int64 {
	return min(max(availableMemory()/64, 64<<20), 1<<30)
}

// availableMemory is the cgroup memory limit (v2, then v1) when one is set, else the
// machine's memory, else 4 GiB.
func availableMemory() int64 {
	read := func(path string) int64 {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0 // "max" or unlimited
		}
		return n
	}
	total := int64(4 << 30)
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				fs := strings.Fields(rest)
				if len(fs) > 0 {
					if kb, err := strconv.ParseInt(fs[0], 10, 64); err == nil && kb > 0 {
						total = kb << 10
					}
				}
			}
		}
		f.Close()
	}
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if n := read(p); n > 0 && n < total {
			return n
		}
	}
	return total
}
