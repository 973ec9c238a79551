package testutil

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"time"
)

// ConnLoop connects to an IMAP server again and again from several
// goroutines and counts how each connection went: for tests of a handover
// between two servers, where no client may be refused or left unanswered.
type ConnLoop struct {
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	mu     sync.Mutex
	counts map[string]int
}

// StartConnLoop starts n goroutines that each connect to addr, read the
// greeting, ask CAPABILITY and log out, over and over (100000 times at
// most). A connection is counted under the first of marks that the
// capability line holds, or under what went wrong.
func StartConnLoop(addr string, n int, marks ...string) *ConnLoop {
	l := &ConnLoop{stop: make(chan struct{}), counts: make(map[string]int)}
	for range n {
		l.wg.Go(func() {
			for range 100000 {
				select {
				case <-l.stop:
					return
				default:
				}
				outcome := capabilityOutcome(addr, marks)
				l.mu.Lock()
				l.counts[outcome]++
				l.mu.Unlock()
			}
		})
	}
	return l
}

// Counts returns the connections counted so far.
func (l *ConnLoop) Counts() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	counts := make(map[string]int, len(l.counts))
	for k, v := range l.counts {
		counts[k] = v
	}
	return counts
}

// Stop stops the goroutines and returns the counts. It may be called again.
func (l *ConnLoop) Stop() map[string]int {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
	return l.Counts()
}

func capabilityOutcome(addr string, marks []string) string {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "* OK") {
		return "greeting: " + strings.TrimSpace(greeting) + errorText(err)
	}
	if _, err := c.Write([]byte("a CAPABILITY\r\n")); err != nil {
		return "write: " + err.Error()
	}
	caps, err := r.ReadString('\n')
	if err != nil {
		return "capability: " + errorText(err)
	}
	c.Write([]byte("b LOGOUT\r\n"))
	for _, m := range marks {
		if strings.Contains(caps, " "+m) {
			return m
		}
	}
	return "capability: " + strings.TrimSpace(caps)
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}
