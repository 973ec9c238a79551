package config

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/mailproxy/mailproxy/errorlog"
)

// This file reads the directives of nginx's main context (outside the mail
// block) other than error_log and pid: those a program started from the
// configuration applies to its process (user, worker_rlimit_nofile,
// worker_connections, max_connections), worker_shutdown_timeout for the
// Proxy, and those that mean nothing here, which are named in a notice.

// LoadMain reads only the main context of the configuration file at path:
// the directives outside the mail block, such as pid, which a program
// needs before anything else (nginx's -s). The returned Config has no
// Proxy, and nothing to close.
func LoadMain(path string, opts Options) (*Config, error) {
	opts.mainOnly = true
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return Load(path, opts)
}

// noEffect names, for each directive of nginx's main context and events
// block that has no meaning in a single Go process, what replaces it.
var noEffect = map[string]string{
	"daemon":                    "the process manager (systemd, Docker) runs the program in the background",
	"master_process":            "one process serves, reloads and drains: there is no master",
	"worker_processes":          "one process uses every CPU; GOMAXPROCS limits how many",
	"worker_cpu_affinity":       "the process manager (systemd CPUAffinity=, taskset)",
	"worker_priority":           "the process manager (systemd Nice=, nice)",
	"worker_rlimit_core":        "the process manager (systemd LimitCORE=, ulimit -c)",
	"working_directory":         "the process manager (systemd WorkingDirectory=)",
	"lock_file":                 "no workers share the listening sockets",
	"accept_mutex":              "no workers share the listening sockets",
	"accept_mutex_delay":        "no workers share the listening sockets",
	"multi_accept":              "Go's runtime accepts connections as they come",
	"use":                       "Go's runtime uses the system's best (epoll, kqueue)",
	"worker_aio_requests":       "Go's runtime does the I/O",
	"timer_resolution":          "Go's runtime keeps the timers",
	"thread_pool":               "Go's runtime schedules the work; GOMAXPROCS limits the CPUs",
	"pcre_jit":                  "no regular expressions here",
	"ssl_engine":                "crypto/tls has no engines",
	"env":                       "the process manager sets the environment",
	"load_module":               "the mail proxy is built in",
	"debug_points":              "Go's runtime: GOTRACEBACK",
	"debug_connection":          "error_log debug",
	"google_perftools_profiles": "MAILPROXY_CPUPROFILE (see the example binary)",
}

// mainDirective applies d, a directive of the main context other than
// mail, error_log and pid.
func (c *Config) mainDirective(d *Directive, log *slog.Logger) error {
	var err error
	switch d.Name {
	case "user":
		if err = topLevel(d, 1, 2); err == nil {
			c.User = d.Args[0]
			if len(d.Args) == 2 {
				c.Group = d.Args[1]
			}
		}
	case "worker_rlimit_nofile":
		err = topCount(d, &c.RlimitNofile)
	case "max_connections":
		err = topCount(d, &c.MaxConnections)
	case "worker_shutdown_timeout":
		if err = topLevel(d, 1, 1); err == nil {
			if c.shutdownTimeout, err = parseTime(d.Args[0]); err != nil {
				err = errorAt(d, fmt.Sprintf("%v in \"%s\" directive", err, d.Name))
			}
		}
	case "events":
		err = c.events(d, log)
	default:
		noticeNoEffect(d, log)
	}
	return err
}

// events reads the events block: worker_connections caps the sessions,
// the rest has no meaning here.
func (c *Config) events(block *Directive, log *slog.Logger) error {
	if !block.HasBlock || len(block.Args) != 0 {
		return errorAt(block, "directive \"events\" has no opening \"{\"")
	}
	for _, d := range block.Block {
		if d.Name != "worker_connections" {
			noticeNoEffect(d, log)
			continue
		}
		if err := topCount(d, &c.MaxConnections); err != nil {
			return err
		}
	}
	return nil
}

// topCount reads the one number, at least 1, of d into v; a smaller value
// already in v is kept (max_connections and worker_connections).
func topCount(d *Directive, v *int) error {
	if err := topLevel(d, 1, 1); err != nil {
		return err
	}
	n, err := parsePositive(d.Args[0])
	if err != nil {
		return errorAt(d, fmt.Sprintf("%v in \"%s\" directive", err, d.Name))
	}
	if *v == 0 || n < *v {
		*v = n
	}
	return nil
}

// noticeNoEffect says that d has no effect here and what replaces it, or,
// for a directive or block of another module (http, stream), that it is
// skipped.
func noticeNoEffect(d *Directive, log *slog.Logger) {
	if instead, ok := noEffect[d.Name]; ok {
		log.Log(context.Background(), errorlog.LevelNotice, "directive has no effect here", "directive", d.Name, "at", d.Pos(), "instead", instead)
		return
	}
	log.Debug("skipped: not a mail directive", "directive", d.Name, "at", d.Pos())
}
