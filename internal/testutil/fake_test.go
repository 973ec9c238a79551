package testutil

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// echo answers every command with its tag, then its length.
func echo(c *FakeConn, cmd string) {
	tag, _, _ := strings.Cut(cmd, " ")
	c.Reply(tag+" OK", fmt.Sprintf("[%d]", len(cmd)))
}

func TestFakeBackend(t *testing.T) {
	tests := []struct {
		name     string
		script   Script
		steps    []Step
		received []string
	}{
		{"lines", Script{Greeting: "* OK hi", Answer: echo}, []Step{
			{"", "* OK hi"},
			{"a NOOP\r\n\r\nb X {3}\r\n", "a OK", "[6]", " OK", "[0]", "b OK", "[7]"},
		}, []string{"a NOOP", "", "b X {3}"}},
		{"IMAP literals", Script{Greeting: "* OK hi", Literals: true, Answer: echo}, []Step{
			{"", "* OK hi"},
			{"a LOGIN {5}\r\n", "+ go ahead"},
			{"ab\r\nc {2+}\r\nde {0}\r\n", "+ go ahead"},
			{"\r\nb NOOP {x}\r\n", "a OK", "[33]", "b OK", "[10]"},
		}, []string{"a LOGIN {5}\r\nab\r\nc {2+}\r\nde {0}\r\n", "b NOOP {x}"}},
		{"no Answer hangs up after the greeting", Script{Greeting: "-ERR busy"}, []Step{
			{"", "-ERR busy", "<closed>"},
		}, nil},
		{"no greeting", Script{Answer: echo}, []Step{
			{"a NOOP\r\n", "a OK", "[6]"},
		}, []string{"a NOOP"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := StartFake(t, tt.script)
			Dial(t, "tcp", b.Addr).Play(tt.steps)
			if got := b.Received(); strings.Join(got, "|") != strings.Join(tt.received, "|") || len(got) != len(tt.received) {
				t.Errorf("received %q, want %q", got, tt.received)
			}
		})
	}
}

// A connection still open when the test ends is closed.
func TestFakeBackendClosesAtEnd(t *testing.T) {
	outer := t
	var c *Client
	t.Run("open", func(t *testing.T) {
		b := StartFake(t, Script{Greeting: "220 hi", Answer: echo})
		c = Dial(outer, "tcp", b.Addr)
		c.Exchange("", "220 hi")
	})
	c.Conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.R.ReadString('\n'); err != io.EOF {
		t.Errorf("the connection outlived its test: read %v, want EOF", err)
	}
}
