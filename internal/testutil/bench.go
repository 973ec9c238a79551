package testutil

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// The protocol packages benchmark every operation on two sides: "direct"
// against a backend, and "proxy" through their Server in front of that
// same backend. The direct run is the baseline: each proxy run reports its
// time per operation as a multiple of the direct runs' mean (the
// "x-direct" metric) and logs both figures. Running both sub-benchmarks
// (the default) gives the ratio; a proxy run alone reports no ratio.

// BenchSides are the two sides of every benchmark: the baseline first.
var BenchSides = []string{"direct", "proxy"}

// BenchAddrs are the addresses of the two sides of a benchmark.
type BenchAddrs struct {
	Direct string // the backend's
	Proxy  string // the proxy's, in front of that backend
}

// Addr returns the address of side, one of BenchSides.
func (a BenchAddrs) Addr(side string) string {
	if side == "proxy" {
		return a.Proxy
	}
	return a.Direct
}

// BenchRuns records ns/op of every run, by benchmark and side, so that the
// proxy runs can be set against the direct runs of the same process. The
// zero value is ready to use; a package keeps one for all its benchmarks,
// which go test runs one at a time.
type BenchRuns struct {
	runs map[string][]float64
}

// Record records the run that just ended (ops operations of benchmark
// name on side) and returns its ns/op. A proxy run also reports its time
// as a multiple of the mean of the direct runs so far (go test runs all
// -count runs of direct before proxy) and logs both means; rate turns
// ns/op into the figure named unit.
func (r *BenchRuns) Record(b *testing.B, name, side string, ops int, unit string, rate func(nsPerOp float64) float64) float64 {
	b.Helper()
	nsPerOp := float64(b.Elapsed().Nanoseconds()) / float64(ops)
	if r.runs == nil {
		r.runs = map[string][]float64{}
	}
	key := name + "/" + side
	r.runs[key] = append(r.runs[key], nsPerOp)
	direct := r.runs[name+"/direct"]
	if side != "proxy" || len(direct) == 0 {
		return nsPerOp
	}
	base := mean(direct)
	b.ReportMetric(nsPerOp/base, "x-direct")
	b.Logf("direct (mean of %d runs) %.0f ns/op, %.1f %s; proxy %.0f ns/op, %.1f %s; proxy/direct time %.3f",
		len(direct), base, rate(base), unit, nsPerOp, rate(nsPerOp), unit, nsPerOp/base)
	return nsPerOp
}

func mean(v []float64) float64 {
	var sum float64
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

// SessionsPerSecond turns ns/op into operations per second.
func SessionsPerSecond(nsPerOp float64) float64 { return 1e9 / nsPerOp }

// MiBPerSecond returns the rate of an operation that moves size bytes:
// ns/op into MiB/s.
func MiBPerSecond(size int64) func(nsPerOp float64) float64 {
	return func(nsPerOp float64) float64 {
		return float64(size) / (1 << 20) / (nsPerOp / 1e9)
	}
}

// BenchWarmUp runs op n times on each side, untimed, and fails b with the
// side's name on the first error: the first timed runs then do not pay
// for cold code paths, the first connections, or growing the heap and the
// socket buffers.
func BenchWarmUp(b *testing.B, n int, op func(side string) error) {
	b.Helper()
	for _, side := range BenchSides {
		for range n {
			if err := op(side); err != nil {
				b.Fatalf("%s: %v", side, err)
			}
		}
	}
}

// Sessions is the body of a BenchmarkSession: session (one whole
// session, connect to quit, on a side) runs 20 times on each side to warm
// up, then in a sub-benchmark per side. Each run is recorded as "Session"
// and reports sessions/s.
func (r *BenchRuns) Sessions(b *testing.B, session func(side string) error) {
	BenchWarmUp(b, 20, session)
	for _, side := range BenchSides {
		b.Run(side, func(b *testing.B) {
			ops := 0
			for b.Loop() {
				if err := session(side); err != nil {
					b.Fatal(err)
				}
				ops++
			}
			nsPerOp := r.Record(b, "Session", side, ops, "sessions/s", SessionsPerSecond)
			b.ReportMetric(SessionsPerSecond(nsPerOp), "sessions/s")
		})
	}
}

// Transfers is the body of a benchmark that times one transfer of size
// bytes per operation, in a sub-benchmark per side, each run recorded as
// name with its MiB/s. Every operation calls start (untimed), which opens
// a session on side and returns the transfer (timed) and finish
// (untimed). finish gets the transfer's error, ends the session (closing
// it in any case) and returns what fails the benchmark.
func (r *BenchRuns) Transfers(b *testing.B, name string, size int64, start func(side string) (transfer func() error, finish func(error) error, err error)) {
	for _, side := range BenchSides {
		b.Run(side, func(b *testing.B) {
			b.SetBytes(size)
			ops := 0
			for b.Loop() {
				b.StopTimer()
				transfer, finish, err := start(side)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				err = transfer()
				b.StopTimer()
				if err := finish(err); err != nil {
					b.Fatal(err)
				}
				ops++
				b.StartTimer()
			}
			r.Record(b, name, side, ops, "MiB/s", MiBPerSecond(size))
		})
	}
}

// BenchTransfer makes the two parts that Transfers wants of an operation
// on a session already open: timed calls transfer, which moves the data
// and returns its size; finish checks that size against want (what names
// the transfer in the error: "fetched" gives "fetched 10 bytes, want
// 12"), then ends the session with end, or drops it with abort after any
// failure.
func BenchTransfer(what string, want int64, transfer func() (int64, error), end, abort func() error) (timed func() error, finish func(error) error) {
	var n int64
	timed = func() (err error) {
		n, err = transfer()
		return err
	}
	finish = func(err error) error {
		if err == nil && n != want {
			err = fmt.Errorf("%s %d bytes, want %d", what, n, want)
		}
		if err == nil {
			err = end()
		}
		if err != nil {
			abort()
		}
		return err
	}
	return timed, finish
}

// BenchOnce runs a whole operation whose parts BenchTransfer or a
// Transfers start function made: BenchOnce(start(side)) is one untimed
// operation, for a warm-up or a test.
func BenchOnce(transfer func() error, finish func(error) error, err error) error {
	if err != nil {
		return err
	}
	return finish(transfer())
}

// BenchMessage returns a message of exactly size bytes (size ≥ 128): a
// short header and lines of 78 characters. No line starts with a dot; it
// ends with CRLF when size%78 ≠ 67.
func BenchMessage(size int) []byte {
	const header = "From: bench@example.org\r\nTo: bench@example.org\r\nSubject: bench\r\n\r\n"
	line := strings.Repeat("x", 76) + "\r\n"
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString(header)
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	if rest := size - b.Len(); rest > 0 {
		b.WriteString(line[len(line)-rest:]) // ends with CRLF when rest ≥ 2
	}
	return b.Bytes()
}
