package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"encore.app/internal/freeport"
	"encore.app/realtime/stream"
)

// target is the server under test: one or more instance base URLs, and when the bench
// spawned it, the child process (for RSS, CPU, heap, kill and restart).
type target struct {
	urls []string // http://host:port, no trailing slash
	key  string   // publisher key
	http *http.Client

	// set when spawned
	bin     string
	dataDir string
	args    []string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd's Wait returns
	logPath string
	ownDir  string // temp dir the bench created (data, log, built binary); removed by close
	pprof   bool   // the server serves /debug/vars and /debug/pprof

	// set when the bench spawned several instances on a shared bus (spawnInstances):
	// each member is one spawned server; the figures are summed.
	members []*target
	backend *backend
}

// spawnOptions configure spawnServer.
type spawnOptions struct {
	Bin  string   // realtimed binary; empty builds ./cmd/realtimed
	Args []string // extra server flags
	Key  string
	// Keyed: the server has every key (a server with one key needs all three): Args
	// carry -token-keys, Key is its publisher key, and it gets an admin key.
	Keyed bool
	Dir   string // working dir for data and logs (a temp dir when empty)
	Build string // build output dir when Bin is empty
}

// buildServer compiles cmd/realtimed into dir and returns the binary's path.
func buildServer(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run from inside the encore.app module, or pass -server-bin")
	}
	bin := filepath.Join(dir, "realtimed")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/realtimed")
	cmd.Dir = filepath.Dir(mod)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/realtimed: %w", err)
	}
	return bin, nil
}

// freePort: restarted servers keep their port, see internal/freeport.
func freePort() (int, error) { return freeport.Pick() }

func newHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// attach targets already running servers.
func attach(urls []string, key string) *target {
	for i := range urls {
		urls[i] = strings.TrimRight(urls[i], "/")
	}
	return &target{urls: urls, key: key, http: newHTTPClient()}
}

// benchServerArgs lift the per-IP connect limits of the security layer: every bench
// client connects from 127.0.0.1, which would otherwise be throttled like one office
// reconnecting at once. Channels are public ("public." prefix), so clients need no token.
var benchServerArgs = []string{"-ip-connect-rate", "0", "-connect-rate", "0"}

// spawnServer starts realtimed as a child on a free loopback port with a fresh data dir.
func spawnServer(ctx context.Context, o spawnOptions) (*target, error) {
	dir, own := o.Dir, ""
	if dir == "" {
		d, err := os.MkdirTemp("", "realtime-bench-")
		if err != nil {
			return nil, err
		}
		dir, own = d, d
	}
	bin := o.Bin
	if bin == "" {
		b, err := buildServer(ctx, dir)
		if err != nil {
			if own != "" {
				os.RemoveAll(own)
			}
			return nil, err
		}
		bin = b
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	t := &target{
		urls: []string{"http://127.0.0.1:" + strconv.Itoa(port)}, key: o.Key, http: newHTTPClient(),
		bin: bin, dataDir: filepath.Join(dir, "data"), ownDir: own, logPath: filepath.Join(dir, "realtimed.log"), pprof: true,
	}
	// The spawned server runs in dev mode (anonymous load clients, loopback): its
	// publisher key is the dev key, and a server with one key would need all three,
	// which the caller then passes itself (closed mode: tokens, -publisher-key, -admin-key)
	// or asks for with Keyed.
	if o.Key != devPublisherKey && !o.Keyed && !slices.Contains(o.Args, "-publisher-key") {
		return nil, fmt.Errorf("a spawned server runs in dev mode: publisher key %q, not %q", devPublisherKey, o.Key)
	}
	t.args = append([]string{"-addr", "127.0.0.1:" + strconv.Itoa(port), "-data", t.dataDir,
		"-log-level", "warn", "-pprof"}, benchServerArgs...)
	if o.Keyed {
		t.args = append(t.args, "-publisher-key", o.Key, "-admin-key", "bench-admin-key-0123456789")
	}
	t.args = append(t.args, o.Args...)
	if err := t.start(ctx); err != nil {
		if own != "" {
			os.RemoveAll(own)
		}
		return nil, err
	}
	return t, nil
}

// start runs the server binary and waits for /readyz (/healthz answers as soon as the
// process listens, before the stream takes connections).
func (t *target) start(ctx context.Context) error {
	logf, err := os.OpenFile(t.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(t.bin, t.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(numCPU()))
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", t.bin, err)
	}
	t.cmd = cmd
	t.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(t.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-t.exited:
			return fmt.Errorf("realtimed exited at start; see %s:\n%s", t.logPath, tail(t.logPath))
		case <-ctx.Done():
			t.kill()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := t.http.Get(t.urls[0] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
	}
	t.kill()
	return errors.New("realtimed did not become ready within 60s")
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func (t *target) spawned() bool { return t.cmd != nil || len(t.members) > 0 }

func (t *target) pid() int {
	if len(t.members) > 0 {
		return t.members[0].pid()
	}
	if t.cmd == nil || t.cmd.Process == nil {
		return 0
	}
	return t.cmd.Process.Pid
}

// pids are the spawned servers' processes (one, or every member).
func (t *target) pids() []int {
	if len(t.members) == 0 {
		if p := t.pid(); p != 0 {
			return []int{p}
		}
		return nil
	}
	var out []int
	for _, m := range t.members {
		out = append(out, m.pids()...)
	}
	return out
}

// backendPIDs are the processes of the shared bus the bench started (none otherwise).
func (t *target) backendPIDs() []int {
	if t.backend == nil {
		return nil
	}
	return t.backend.pids()
}

// kill sends SIGKILL and waits for the process to be gone.
func (t *target) kill() {
	if t.cmd == nil {
		return
	}
	_ = t.cmd.Process.Signal(syscall.SIGKILL)
	<-t.exited
}

// stop asks the server to drain (SIGTERM) and waits, killing it after 15s.
func (t *target) stop() {
	if t.cmd == nil {
		return
	}
	_ = t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.exited:
	case <-time.After(15 * time.Second):
		t.kill()
	}
}

// close stops a spawned server and removes its data (every member, then the backend).
func (t *target) close() {
	if len(t.members) > 0 || t.backend != nil {
		for _, m := range t.members {
			m.close()
		}
		if t.backend != nil {
			t.backend.close()
		}
		return
	}
	if t.cmd == nil {
		return
	}
	t.stop()
	_ = os.RemoveAll(t.dataDir)
	if t.ownDir != "" {
		_ = os.RemoveAll(t.ownDir)
	}
}

func (t *target) streamURL(i int) string {
	u := t.urls[i%len(t.urls)]
	return "ws" + strings.TrimPrefix(u, "http") + "/v2/realtime/stream"
}

// metrics sums /v2/realtime/metrics over every instance.
func (t *target) metrics(ctx context.Context) (stream.Snapshot, error) {
	var sum stream.Snapshot
	for _, u := range t.urls {
		var s stream.Snapshot
		if err := t.getJSON(ctx, u+"/v2/realtime/metrics", &s); err != nil {
			return sum, err
		}
		sum.ActiveConnections += s.ActiveConnections
		sum.ConnectionsTotal += s.ConnectionsTotal
		sum.EventsPublished += s.EventsPublished
		sum.EventsDispatched += s.EventsDispatched
		sum.EventsDelivered += s.EventsDelivered
		sum.EventsReplayed += s.EventsReplayed
		sum.FramesWritten += s.FramesWritten
		sum.EventFrames += s.EventFrames
		sum.BytesRaw += s.BytesRaw
		sum.BytesWire += s.BytesWire
		sum.BytesRead += s.BytesRead
		sum.SlowDisconnects += s.SlowDisconnects
		sum.HeadSeq = max(sum.HeadSeq, s.HeadSeq)
		sum.Epoch = s.Epoch
		sum.Drops = addMaps(sum.Drops, s.Drops)
		sum.Disconnects = addMaps(sum.Disconnects, s.Disconnects)
		if s.WriteLatencyMs.P99 > sum.WriteLatencyMs.P99 {
			sum.WriteLatencyMs = s.WriteLatencyMs
		}
		if s.PublishLatencyMs.P99 > sum.PublishLatencyMs.P99 { // the worst instance's, like the writes'
			sum.PublishLatencyMs = s.PublishLatencyMs
		}
	}
	return sum, nil
}

func addMaps(a, b map[string]uint64) map[string]uint64 {
	if a == nil {
		a = map[string]uint64{}
	}
	for k, v := range b {
		a[k] += v
	}
	return a
}

func (t *target) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := t.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// procStats is what /proc says about the spawned server.
type procStats struct {
	RSS     int64         // VmRSS bytes
	CPU     time.Duration // utime+stime
	Threads int
}

// clockTick is USER_HZ, 100 on every Linux this runs on.
const clockTick = 100

func readProc(pid int) (procStats, error) {
	var p procStats
	if pid == 0 {
		return p, errors.New("no child process")
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			p.RSS = kb << 10
		case strings.HasPrefix(line, "Threads:"):
			p.Threads, _ = strconv.Atoi(strings.Fields(line)[1])
		}
	}
	f.Close()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, err
	}
	// Fields after the ")" that closes the command name: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) > 13 {
		ut, _ := strconv.ParseInt(fs[11], 10, 64)
		st, _ := strconv.ParseInt(fs[12], 10, 64)
		p.CPU = time.Duration(ut+st) * time.Second / clockTick
	}
	return p, nil
}

func (t *target) proc() procStats {
	if len(t.members) > 0 {
		var sum procStats
		for _, m := range t.members {
			p := m.proc()
			sum.RSS, sum.CPU, sum.Threads = sum.RSS+p.RSS, sum.CPU+p.CPU, sum.Threads+p.Threads
		}
		return sum
	}
	p, _ := readProc(t.pid())
	return p
}

// memStats is the part of runtime.MemStats served by expvar at /debug/vars.
type memStats struct {
	HeapAlloc   uint64 `json:"HeapAlloc"`
	HeapInuse   uint64 `json:"HeapInuse"`
	HeapSys     uint64 `json:"HeapSys"`
	StackInuse  uint64 `json:"StackInuse"`
	Sys         uint64 `json:"Sys"`
	NumGC       uint32 `json:"NumGC"`
	Goroutines  int    `json:"-"`
	HeapObjects uint64 `json:"HeapObjects"`
}

// heap reads the Go heap figures of the first instance (needs -pprof); zero if absent.
func (t *target) heap(ctx context.Context) memStats {
	var v struct {
		MemStats memStats `json:"memstats"`
	}
	if !t.pprof || t.getJSON(ctx, t.urls[0]+"/debug/vars", &v) != nil {
		return memStats{}
	}
	v.MemStats.Goroutines = t.goroutines(ctx)
	return v.MemStats
}

func (t *target) goroutines(ctx context.Context) int {
	req, _ := http.NewRequestWithContext(ctx, "GET", t.urls[0]+"/debug/pprof/goroutine?debug=1", nil)
	resp, err := t.http.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	// "goroutine profile: total 1234"
	n, _ := strconv.Atoi(strings.TrimSpace(line[strings.LastIndexByte(line, ' ')+1:]))
	return n
}

// gc forces a collection in the server (pprof's heap profile with gc=1).
func (t *target) gc(ctx context.Context) {
	if !t.pprof {
		return
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", t.urls[0]+"/debug/pprof/heap?gc=1", nil)
	if resp, err := t.http.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// devPublisherKey is the dev-mode publisher key of realtimed (server.DevPublisherKey).
const devPublisherKey = "dev"
