package resolver

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// recorder is a Metrics that keeps what it is told.
type recorder struct {
	mu        sync.Mutex
	lookups   []string // "kind response"
	exchanges int
}

func (r *recorder) Lookup(kind QueryKind, response Response) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups = append(r.lookups, fmt.Sprint(kind, " ", response))
}

func (r *recorder) Exchange(took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if took > 0 {
		r.exchanges++
	}
}

// Each question a lookup asks is counted as Angie counts the queries and
// responses of a status_zone: a client's PTR as "addr", the A or AAAA that
// confirms it as "name", answered from the cache or not; the name
// servers' time is observed for the questions the cache did not answer.
func TestMetrics(t *testing.T) {
	checkGoroutines(t)
	s := newTestServer(t, slowBy(time.Second))
	refused := newTestServer(t, refusing)
	tests := []struct {
		name      string
		server    string
		ips       []string // looked up in turn
		lookups   []string
		exchanges int
	}{
		{"PTR and A", s.addr, []string{"192.0.2.1"}, []string{"addr success", "name success"}, 2},
		{"cached", s.addr, []string{"192.0.2.1", "192.0.2.1"}, []string{"addr success", "name success", "addr success", "name success"}, 2},
		{"NXDOMAIN", s.addr, []string{"192.0.2.2"}, []string{"addr not_found"}, 1},
		{"SERVFAIL", s.addr, []string{"192.0.2.3"}, []string{"addr server_failure"}, 1},
		{"NODATA for A", s.addr, []string{"192.0.2.12"}, []string{"addr success", "name not_found"}, 2},
		{"forward mismatch", s.addr, []string{"192.0.2.4"}, []string{"addr success", "name success"}, 2},
		{"slow", s.addr, []string{"192.0.2.5"}, []string{"addr timedout"}, 1},
		{"REFUSED", refused.addr, []string{"192.0.2.1"}, []string{"addr refused"}, 1},
		{"silent", deadServer(t), []string{"192.0.2.1"}, []string{"addr timedout"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			r, _ := newTestResolver(t, Config{Servers: []string{tt.server}, Timeout: 300 * time.Millisecond, Metrics: rec})
			for _, ip := range tt.ips {
				r.ClientHost(t.Context(), addr(ip))
			}
			r.Close() // waits for the exchanges a timeout left running
			if !slices.Equal(rec.lookups, tt.lookups) || rec.exchanges != tt.exchanges {
				t.Errorf("counted %q and %d exchanges, want %q and %d", rec.lookups, rec.exchanges, tt.lookups, tt.exchanges)
			}
		})
	}
}
