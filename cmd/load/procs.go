package main

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on
// Linux everywhere that matters).
const clockTicks = 100

// procCPU is the user+system CPU a process has used so far, or 0 when it
// cannot be read.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields after it start
	// after its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// procName is /proc/<pid>/comm.
func procName(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// procCmdline is /proc/<pid>/cmdline with spaces between the arguments.
func procCmdline(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// allPids lists the processes of the machine.
func allPids() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// group is a set of processes whose CPU is counted together (the broker's
// JVM, the PostgreSQL server's processes, the gateway).
type group struct {
	name string
	find func() []int // the group's processes now (they may come and go)
}

// cpu sums the group's processes' CPU. Processes that ended between two
// readings are lost, so groups of short-lived processes read low.
func (g group) cpu() time.Duration {
	var d time.Duration
	for _, pid := range g.find() {
		d += procCPU(pid)
	}
	return d
}

func pidGroup(name string, pid int) group {
	return group{name: name, find: func() []int { return []int{pid} }}
}

// matching is the group of processes whose cmdline contains s.
func matching(name, s string) group {
	return group{name: name, find: func() []int {
		var out []int
		for _, pid := range allPids() {
			if strings.Contains(procCmdline(pid), s) {
				out = append(out, pid)
			}
		}
		return out
	}}
}

// named is the group of processes called comm (PostgreSQL's server and its
// backends are all "postgres").
func named(name, comm string) group {
	return group{name: name, find: func() []int {
		var out []int
		for _, pid := range allPids() {
			if procName(pid) == comm {
				out = append(out, pid)
			}
		}
		return out
	}}
}

// cpuMeter reads several groups' CPU at the start and the end of a window.
type cpuMeter struct {
	groups []group
	start  []time.Duration
	end    []time.Duration
	t0, t1 time.Time
}

func (m *cpuMeter) begin() {
	m.start = m.read()
	m.t0 = time.Now()
}

func (m *cpuMeter) finish() {
	m.end = m.read()
	m.t1 = time.Now()
}

func (m *cpuMeter) read() []time.Duration {
	out := make([]time.Duration, len(m.groups))
	for i, g := range m.groups {
		out[i] = g.cpu()
	}
	return out
}

// cores is the CPU group i used in the window, in cores.
func (m *cpuMeter) cores(i int) float64 {
	wall := m.t1.Sub(m.t0)
	if wall <= 0 || i >= len(m.end) {
		return 0
	}
	return float64(m.end[i]-m.start[i]) / float64(wall)
}

// used is the CPU group i used in the window.
func (m *cpuMeter) used(i int) time.Duration {
	if i >= len(m.end) {
		return 0
	}
	return m.end[i] - m.start[i]
}

// selfCPU is this process's CPU.
func selfCPU() group { return pidGroup("load", os.Getpid()) }
