package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go runs on.
const clockTicks = 100

// procStat holds the fields of /proc/<pid>/stat the bench reads.
type procStat struct {
	ppid int
	cpu  time.Duration // utime + stime
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name may hold spaces: the fields start after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, _ := strconv.Atoi(f[1])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return procStat{ppid: ppid, cpu: time.Duration(utime+stime) * time.Second / clockTicks}, nil
}

// children returns the processes whose parent is pid (nginx's workers).
func children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err == nil {
		var kids []int
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				kids = append(kids, n)
			}
		}
		return kids
	}
	// Kernels without the children file: scan /proc.
	ents, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(n); err == nil && st.ppid == pid {
			kids = append(kids, n)
		}
	}
	return kids
}

// statusKiB reads a "Name: N kB" line of /proc/<pid>/status.
func statusKiB(pid int, name string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

func fdCount(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	return len(ents)
}

// usage is what a proxy's processes hold and have spent, summed over the
// process and its children (nginx's master and workers).
type usage struct {
	cpu   time.Duration
	rssKB int64
	fds   int
	procs int
}

func measure(pid int) usage {
	var u usage
	for _, p := range append([]int{pid}, children(pid)...) {
		st, err := readStat(p)
		if err != nil {
			continue
		}
		u.cpu += st.cpu
		u.rssKB += statusKiB(p, "VmRSS")
		u.fds += fdCount(p)
		u.procs++
	}
	return u
}

// cpuList parses "0-2,5" into CPU numbers.
func cpuList(s string) ([]int, error) {
	var cpus []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("cpu list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

func formatCPUs(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

func cpuSet(cpus []int) *unix.CPUSet {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	return &set
}

// allowedCPUs returns the CPUs this process may run on.
func allowedCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		cpus := make([]int, runtime.NumCPU())
		for i := range cpus {
			cpus[i] = i
		}
		return cpus
	}
	var cpus []int
	for c := range 1024 {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

// pinSelf puts every thread of this process on cpus: threads made later
// inherit the mask of the thread that makes them.
func pinSelf(cpus []int) error {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, cpuSet(cpus)); err != nil {
			return fmt.Errorf("sched_setaffinity: %w", err)
		}
	}
	runtime.GOMAXPROCS(len(cpus))
	return nil
}

// startPinned starts cmd on cpus (all of them when cpus is empty): the
// child inherits the affinity of the thread that forks it, which holds
// the proxies' CPUs for that moment.
func startPinned(cmd *exec.Cmd, cpus []int) error {
	if len(cpus) == 0 {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return err
	}
	if err := unix.SchedSetaffinity(0, cpuSet(cpus)); err != nil {
		return fmt.Errorf("sched_setaffinity: %w", err)
	}
	err := cmd.Start()
	if err2 := unix.SchedSetaffinity(0, &old); err == nil && err2 != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return err2
	}
	return err
}

// raiseFileLimit raises RLIMIT_NOFILE to want, or as far as allowed; the
// proxies started after inherit it. It returns the limit in force.
func raiseFileLimit(want uint64) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Cur >= want {
		return rl.Cur
	}
	// As root the hard limit may go up to fs.nr_open.
	if rl.Max < want {
		try := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &try) == nil {
			return want
		}
	}
	rl.Cur = min(want, rl.Max)
	// syscall.Setrlimit, rather than unix's: it also tells os/exec to pass
	// this limit on to children rather than the one the process started with.
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}

// process is a proxy started by the bench: its pid, its log.
type process struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startProcess(cmd *exec.Cmd, cpus []int, logPath string) (*process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := startPinned(cmd, cpus); err != nil {
		f.Close()
		return nil, err
	}
	p := &process{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process with SIGTERM, then SIGKILL after a grace time.
func (p *process) stop() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// tailLog returns the end of the process's log, for error messages.
func (p *process) tailLog() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return fmt.Sprintf("%s:\n%s", filepath.Base(p.log), b)
}

// window is the CPU the proxy and the generator spent over one run.
type window struct {
	start time.Time
	proxy usage
	gen   time.Duration
}

// begin opens a window on c's processes and the bench's own.
func (h *harness) begin(c *contender) window {
	st, _ := readStat(os.Getpid())
	return window{start: time.Now(), proxy: c.usage(), gen: st.cpu}
}

// end closes the window and adds the load of the proxy's CPUs and the
// generator's (the bench process, without the proxies it started) to the
// rows, in percent of their CPUs: the one near 100 % was the bottleneck.
// It returns the proxy's CPU time over the window.
func (h *harness) end(w window, c *contender, scenario, cas string) time.Duration {
	elapsed := time.Since(w.start)
	st, _ := readStat(os.Getpid())
	genCPUs := len(h.genCPUs)
	if genCPUs == 0 {
		genCPUs = len(h.proxyCPUs)
	}
	gen := h.res.row(scenario, cas, "generator CPU load", "%", false)
	gen.fig(c.name).add(100 * float64(st.cpu-w.gen) / float64(elapsed) / float64(genCPUs))
	if c.proc == nil {
		return 0
	}
	cpu := c.usage().cpu - w.proxy.cpu
	load := h.res.row(scenario, cas, "proxy CPU load", "%", false)
	load.fig(c.name).add(100 * float64(cpu) / float64(elapsed) / float64(len(h.proxyCPUs)))
	return cpu
}
