package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func numCPU() int { return runtime.NumCPU() }

// raiseFDLimit lifts RLIMIT_NOFILE to its hard limit (5,000 clients need >10,000 fds
// between the bench and a spawned server, which inherits the limit).
func raiseFDLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	r.Cur = r.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r)
	return r.Cur
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU returns total and idle jiffies from /proc/stat (all cores).
func machineCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fs := strings.Fields(line)
	var sum, idle int64
	for i, f := range fs[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		if i >= 8 { // guest time is already in user
			break
		}
		sum += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	return time.Duration(sum-idle) * time.Second / clockTick, time.Duration(sum) * time.Second / clockTick
}

// cpuMeter measures CPU shares over an interval: this process, the spawned server, and
// the whole machine (others' work included).
type cpuMeter struct {
	at            time.Time
	self, server  time.Duration
	mBusy, mTotal time.Duration
	pids          []int
	// backend lists the shared bus's processes (spawnInstances) at start and at stop;
	// bstart is their CPU at start, by pid.
	backend func() []int
	bstart  map[int]time.Duration
}

func startCPU(pid int) cpuMeter {
	if pid == 0 {
		return startCPUs(nil, nil)
	}
	return startCPUs([]int{pid}, nil)
}

// startCPUOf measures t's servers and, when the bench started it, the shared bus.
func startCPUOf(t *target) cpuMeter { return startCPUs(t.pids(), t.backendPIDs) }

func startCPUs(pids []int, backend func() []int) cpuMeter {
	m := cpuMeter{at: time.Now(), self: selfCPU(), pids: pids, backend: backend}
	m.server = cpuOf(pids)
	if backend != nil {
		m.bstart = map[int]time.Duration{}
		for _, p := range backend() {
			st, _ := readProc(p)
			m.bstart[p] = st.CPU
		}
	}
	m.mBusy, m.mTotal = machineCPU()
	return m
}

func cpuOf(pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		p, _ := readProc(pid)
		sum += p.CPU
	}
	return sum
}

// CPUShare is CPU use over a run, in cores (1.0 = one core busy the whole time).
type CPUShare struct {
	WallSeconds  float64 `json:"wallSeconds"`
	BenchCores   float64 `json:"benchCores"`
	ServerCores  float64 `json:"serverCores"`  // 0 when not spawned
	BackendCores float64 `json:"backendCores"` // the shared bus the bench started (NATS nodes, Postgres); 0 otherwise
	MachineCores float64 `json:"machineCores"` // everything on the machine
	OtherCores   float64 `json:"otherCores"`   // machine minus bench and server
	ServerCPU    float64 `json:"serverCpuSeconds"`
	BenchCPU     float64 `json:"benchCpuSeconds"`
	Cores        int     `json:"cores"`
}

func (m cpuMeter) stop() CPUShare { return m.stopWith(0) }

// stopWith is stop for a run in which a child of the bench, already waited for, used
// child of CPU: it counts as the bench's.
func (m cpuMeter) stopWith(child time.Duration) CPUShare {
	wall := time.Since(m.at).Seconds()
	s := CPUShare{WallSeconds: wall, Cores: numCPU()}
	s.BenchCPU = (selfCPU() - m.self + child).Seconds()
	if len(m.pids) > 0 {
		s.ServerCPU = (cpuOf(m.pids) - m.server).Seconds()
	}
	var backendCPU time.Duration
	if m.backend != nil {
		for _, p := range m.backend() { // a process started during the run counts from 0
			st, _ := readProc(p)
			backendCPU += st.CPU - m.bstart[p]
		}
	}
	b, t := machineCPU()
	if t > m.mTotal {
		s.MachineCores = float64(b-m.mBusy) / float64(t-m.mTotal) * float64(numCPU())
	}
	if wall > 0 {
		s.BenchCores = s.BenchCPU / wall
		s.ServerCores = s.ServerCPU / wall
		s.BackendCores = backendCPU.Seconds() / wall
	}
	s.OtherCores = max(0, s.MachineCores-s.BenchCores-s.ServerCores-s.BackendCores)
	return s
}
