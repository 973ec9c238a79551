package config

import (
	"fmt"
	"net"
	"strconv"
)

// checkMetricsListen checks "metrics_listen address:port | port | off", a
// directive of ours: where the program serves its Prometheus metrics.
func checkMetricsListen(_ *settings, d *Directive) error {
	_, err := parseMetricsListen(d.Args[0])
	return err
}

// parseMetricsListen returns the address to listen on, "" for off. A bare
// port listens on every address, as listen does.
func parseMetricsListen(v string) (string, error) {
	if v == "off" {
		return "", nil
	}
	addr := v
	if _, err := strconv.ParseUint(v, 10, 16); err == nil {
		addr = ":" + v
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("invalid address %q", v)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("invalid port in %q", v)
	}
	return addr, nil
}

// metricsListen returns the address of the mail block's metrics_listen,
// which Load has checked; "" without one.
func metricsListen(mail *Directive) string {
	for _, d := range mail.Block {
		if d.Name == "metrics_listen" {
			addr, _ := parseMetricsListen(d.Args[0])
			return addr
		}
	}
	return ""
}
