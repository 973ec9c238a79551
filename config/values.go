package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/mailproxy/mailproxy"
)

type timeUnit struct {
	suffix string
	d      time.Duration
}

// timeUnits are nginx's time units; "ms" comes before "m" so that it is
// tried first.
var timeUnits = []timeUnit{
	{"ms", time.Millisecond},
	{"y", 365 * 24 * time.Hour},
	{"M", 30 * 24 * time.Hour},
	{"w", 7 * 24 * time.Hour},
	{"d", 24 * time.Hour},
	{"h", time.Hour},
	{"m", time.Minute},
	{"s", time.Second},
}

// parseTime reads an nginx time such as "500ms", "30s", "1h30m" or "60"
// (seconds).
func parseTime(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 31); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		n, err := strconv.ParseUint(rest[:i], 10, 31)
		if err != nil {
			return 0, fmt.Errorf("invalid time %q", s)
		}
		unit, ok := findUnit(rest[i:])
		if !ok || time.Duration(n) > (math.MaxInt64-total)/unit.d {
			return 0, fmt.Errorf("invalid time %q", s)
		}
		total += time.Duration(n) * unit.d
		rest = rest[i+len(unit.suffix):]
	}
	if s == "" {
		return 0, fmt.Errorf("invalid time %q", s)
	}
	return total, nil
}

func findUnit(s string) (timeUnit, bool) {
	for _, u := range timeUnits {
		if strings.HasPrefix(s, u.suffix) {
			return u, true
		}
	}
	return timeUnit{}, false
}

// parseSize reads an nginx size: bytes, or a number with k, m or g.
func parseSize(s string) (int, error) {
	mult := 1
	num := s
	if s != "" {
		switch s[len(s)-1] {
		case 'k', 'K':
			mult, num = 1<<10, s[:len(s)-1]
		case 'm', 'M':
			mult, num = 1<<20, s[:len(s)-1]
		case 'g', 'G':
			mult, num = 1<<30, s[:len(s)-1]
		}
	}
	n, err := strconv.ParseUint(num, 10, 31)
	if err != nil || int64(n)*int64(mult) > 1<<31-1 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return int(n) * mult, nil
}

// parseFlag reads "on" or "off".
func parseFlag(s string) (bool, error) {
	switch s {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, fmt.Errorf(`invalid value %q, it must be "on" or "off"`, s)
}

// parseListen reads the arguments of a listen directive.
func parseListen(args []string) (mailproxy.ListenConfig, error) {
	lc := mailproxy.ListenConfig{Address: args[0]}
	for _, p := range args[1:] {
		if err := listenParam(&lc, p); err != nil {
			return lc, err
		}
	}
	return lc, nil
}

func listenParam(lc *mailproxy.ListenConfig, p string) error {
	name, value, hasValue := strings.Cut(p, "=")
	var err error
	switch {
	case p == "ssl":
		lc.SSL = true
	case p == "proxy_protocol":
		lc.ProxyProtocol = true
	case p == "bind":
		lc.Bind = true
	case p == "reuseport":
		lc.ReusePort = true
	case p == "multipath":
		lc.Multipath = true
	case hasValue && name == "backlog":
		lc.Backlog, err = strconv.Atoi(value)
		if err == nil && lc.Backlog < 1 {
			err = fmt.Errorf("invalid backlog %q", value)
		}
	case hasValue && name == "rcvbuf":
		lc.RcvBuf, err = parseSize(value)
	case hasValue && name == "sndbuf":
		lc.SndBuf, err = parseSize(value)
	case hasValue && name == "ipv6only":
		lc.IPv6Only, err = parseSwitch(value)
	case hasValue && name == "so_keepalive":
		err = parseKeepAlive(lc, value)
	default:
		return fmt.Errorf("invalid parameter %q", p)
	}
	if err != nil {
		return fmt.Errorf("listen %s: %w", p, err)
	}
	return nil
}

func parseSwitch(s string) (mailproxy.Switch, error) {
	on, err := parseFlag(s)
	if on {
		return mailproxy.On, err
	}
	return mailproxy.Off, err
}

// parseKeepAlive reads "on", "off" or "[idle]:[intvl]:[cnt]".
func parseKeepAlive(lc *mailproxy.ListenConfig, s string) error {
	if s == "on" || s == "off" {
		var err error
		lc.KeepAlive, err = parseSwitch(s)
		return err
	}
	parts := strings.Split(s, ":")
	if len(parts) != 3 || s == "::" {
		return fmt.Errorf("invalid so_keepalive value %q", s)
	}
	var err error
	if parts[0] != "" {
		if lc.KeepIdle, err = parseTime(parts[0]); err != nil {
			return err
		}
	}
	if parts[1] != "" {
		if lc.KeepIntvl, err = parseTime(parts[1]); err != nil {
			return err
		}
	}
	if parts[2] != "" {
		if lc.KeepCnt, err = strconv.Atoi(parts[2]); err != nil || lc.KeepCnt < 1 {
			return fmt.Errorf("invalid so_keepalive count %q", parts[2])
		}
	}
	lc.KeepAlive = mailproxy.On
	return nil
}
