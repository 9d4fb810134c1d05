//go:build linux

package stream

import (
	"errors"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// epollParker waits for the sockets of connections to become writable (the writers'
// parker) or readable (the readers' parker) with one epoll instance and one goroutine
// for all of them: a waiting connection costs an entry in a map, not a goroutine. Each
// socket is registered level-triggered and one-shot (EPOLLONESHOT), re-armed at each
// park, so a socket that became ready between the look and the arm is reported at
// once. The registration is made inside syscall.RawConn.Control, which keeps the
// runtime from closing (and reusing) the descriptor meanwhile; closing the socket
// removes it from the set (so whoever closes a socket whose connection is parked hands
// the connection on itself: Client.wakeReader for a reader).
type epollParker struct {
	epfd   int
	evfd   int    // eventfd that ends run
	events uint32 // what a report means: EPOLLOUT, or EPOLLIN|EPOLLRDHUP
	reg    func(*Client) *pollReg

	mu    sync.Mutex
	armed map[uint32]*Client // never more than the open connections
	next  uint32             // last id given out; 0 is the eventfd
}

// newParker is the writers' parker: one report when a socket is writable.
func newParker() (parker, error) {
	return newEpollParker(unix.EPOLLOUT, func(c *Client) *pollReg { return &c.wpoll })
}

// newReadParker is the readers' parker: one report when a socket is readable, or its
// peer closed it, or it failed.
func newReadParker() (parker, error) {
	return newEpollParker(unix.EPOLLIN|unix.EPOLLRDHUP, func(c *Client) *pollReg { return &c.rpoll })
}

func newEpollParker(events uint32, reg func(*Client) *pollReg) (*epollParker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: 0}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, err
	}
	return &epollParker{epfd: epfd, evfd: evfd, events: events, reg: reg, armed: map[uint32]*Client{}}, nil
}

var errNoSocket = errors.New("stream: no socket to poll")

// arm registers c's socket for one report. Only the side that owns c's registration
// with p (the writer, or the reader) arms it.
func (p *epollParker) arm(c *Client) error {
	if c.cc.raw == nil {
		return errNoSocket
	}
	r := p.reg(c)
	p.mu.Lock()
	if r.id == 0 {
		p.next++
		if p.next == 0 {
			p.next++
		}
		r.id = p.next
	}
	p.armed[r.id] = c
	// The report may come (and the next writer run) before Control returns: what the
	// next writer reads is written before the unlock that the report's lookup follows.
	op := unix.EPOLL_CTL_MOD
	if !r.added {
		op = unix.EPOLL_CTL_ADD
	}
	r.added = true
	id := r.id
	p.mu.Unlock()
	var cerr error
	err := c.cc.raw.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: p.events | unix.EPOLLONESHOT, Fd: int32(id)}
		cerr = unix.EpollCtl(p.epfd, op, int(fd), &ev)
		if cerr == unix.ENOENT && op == unix.EPOLL_CTL_MOD {
			cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		}
		if cerr == unix.EEXIST && op == unix.EPOLL_CTL_ADD {
			cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		// Not registered: no report comes, so no other writer reads this.
		p.mu.Lock()
		if p.armed[id] == c {
			delete(p.armed, id)
		}
		r.added = false
		p.mu.Unlock()
		return err
	}
	return nil
}

// disarm forgets c (a report that arrives later is ignored).
func (p *epollParker) disarm(c *Client) {
	p.mu.Lock()
	if id := p.reg(c).id; p.armed[id] == c {
		delete(p.armed, id)
	}
	p.mu.Unlock()
}

// waiting is how many connections are armed and not reported yet.
func (p *epollParker) waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.armed)
}

// run reports ready sockets to onReady until stop.
func (p *epollParker) run(onReady func(*Client)) {
	evs := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, evs, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for i := range evs[:n] {
			id := uint32(evs[i].Fd)
			if id == 0 {
				return // stop
			}
			p.mu.Lock()
			c := p.armed[id]
			delete(p.armed, id)
			p.mu.Unlock()
			if c != nil {
				onReady(c)
			}
		}
	}
}

// stop ends run; call once, then wait for run to return before close.
func (p *epollParker) stop() {
	var one = [8]byte{1}
	_, _ = unix.Write(p.evfd, one[:])
}

func (p *epollParker) close() {
	unix.Close(p.epfd)
	unix.Close(p.evfd)
}

// peerLags reports whether the socket's peer does not keep up: the kernel holds bytes
// not sent to it yet, or it advertises a receive window under window (TCP_INFO;
// kernels before 6.2 report no window, and only unsent bytes count there).
func peerLags(rc syscall.RawConn, window int) (bool, error) {
	var ti *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { ti, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		return false, err
	}
	if ierr != nil {
		return false, ierr
	}
	return ti.Notsent_bytes > 0 || (ti.Snd_wnd > 0 && int(ti.Snd_wnd) < window), nil
}
