package config

import (
	"errors"
	"fmt"
)

// The limits on each client address, ours (mailproxy.ClientLimits), set in
// the mail block:
//
//	max_connections_per_client     20;
//	max_login_failures_per_client  10 15m;   # the window: 10m when left out

func setMaxConnectionsPerClient(s *settings, d *Directive) error {
	n, err := parsePositive(d.Args[0])
	s.clientLimits.Connections = n
	return err
}

func setMaxLoginFailuresPerClient(s *settings, d *Directive) error {
	n, err := parsePositive(d.Args[0])
	if err != nil {
		return err
	}
	s.clientLimits.LoginFailures = n
	if len(d.Args) == 2 {
		w, err := parseTime(d.Args[1])
		if err == nil && w == 0 {
			err = fmt.Errorf("invalid time %q", d.Args[1])
		}
		s.clientLimits.LoginWindow = w
		return err
	}
	return nil
}

// parsePositive reads a count of at least one.
func parsePositive(v string) (int, error) {
	n, err := parseCount(v)
	if err == nil && n == 0 {
		err = errors.New("invalid number \"0\"")
	}
	return n, err
}
