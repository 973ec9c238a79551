package testutil

import "encoding/base64"

// Step is one exchange of a transcript, as a client sees it: its first
// string is what the client sends, its others the lines it then reads.
// Both mean what they mean to Exchange: the send carries its own line ends
// and is nothing when empty (a step that only reads, as of a greeting);
// each line is a prefix of the server's, "…x" skips lines up to one
// starting with x, and "<closed>" is the end of the connection.
//
//	c.Play([]testutil.Step{
//		{"", "* OK "},
//		{"a LOGIN {5}\r\n", "+ "},
//		{"alice secret\r\n", "a OK "},
//	})
//
// A Step is a slice, not a struct, so that tables of transcripts in other
// packages may write each one as a bare {send, expect...} literal.
type Step []string

// Play runs the steps of a transcript in order, failing the test at the
// first line that differs from the expected one.
func (c *Client) Play(steps []Step) {
	c.t.Helper()
	for i, st := range steps {
		if len(st) == 0 {
			c.t.Fatalf("step %d of the transcript is empty", i)
		}
		c.Exchange(st[0], st[1:]...)
	}
}

// B64 is s in standard base64, as SASL responses are sent.
func B64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
