package errorlog_test

import (
	"strings"
	"testing"

	"github.com/mailproxy/mailproxy/errorlog"
)

// ParseSyslog reads configuration text: it never panics, and what it
// accepts is complete and within the protocol's ranges.
func FuzzParseSyslog(f *testing.F) {
	for _, seed := range []string{
		"server=192.0.2.1", "server=[::1]:1514,facility=mail,severity=warn,tag=mp,nohostname",
		"server=unix:/dev/log", "server=a:b:c", "tag=x", ",,", "server=h:0", "facility=local7,server=h",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, params string) {
		s, err := errorlog.ParseSyslog(params)
		if err != nil {
			return
		}
		switch {
		case s.Address == "" || s.Network != "udp" && s.Network != "unixgram":
			t.Errorf("accepted without a server: %+v", s)
		case s.Facility < 0 || s.Facility > 23 || s.Severity < -1 || s.Severity > 7:
			t.Errorf("out of range: %+v", s)
		case len(s.Tag) > 32 || strings.ContainsAny(s.Tag, " :,\n"):
			t.Errorf("bad tag %q", s.Tag)
		}
	})
}
