package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// The contenders: the backends themselves, our proxy, nginx.
const (
	direct    = "direct"
	mailproxy = "mailproxy"
	nginx     = "nginx"
)

var contenderNames = []string{direct, mailproxy, nginx}

// contender is one way to reach the backends: its addresses by listener
// name ("imap", "imaps", …), and the proxy process behind them (nil for
// direct).
type contender struct {
	name  string
	addrs map[string]string
	proc  *process
	down  string // why it is not there: "not installed"
}

// usage returns what the proxy's processes hold and have spent.
func (c *contender) usage() usage {
	if c.proc == nil {
		return usage{}
	}
	return measure(c.proc.pid())
}

func (c *contender) stop() {
	if c.proc != nil {
		c.proc.stop()
	}
}

// confData fills the configuration template.
type confData struct {
	Module    string // nginx's mail module, for load_module; empty without nginx
	Conns     int    // worker_connections
	Auth      string
	Cert, Key string
	Listen    map[string]int // port by listener name
}

// confTemplate is the configuration both proxies run: the same text, the
// listen ports aside. Our binary skips what is not mail (load_module,
// events, worker_rlimit_nofile) as it skips them in any nginx.conf.
var confTemplate = template.Must(template.New("conf").Parse(`# Written by go run ./bench: mailproxy and nginx run this same text, the listen ports aside.
{{if .Module}}load_module {{.Module}};
{{end}}error_log error.log warn;
pid proxy.pid;
worker_rlimit_nofile {{.Conns}};
events {
    worker_connections {{.Conns}};
}
mail {
    server_name  bench.local;
    auth_http    {{.Auth}}/auth;
    proxy_pass_error_message  on;
    imap_auth    plain login;
    pop3_auth    plain;
    smtp_auth    plain login;
    xclient      on;
{{- if .Cert}}
    ssl_certificate      {{.Cert}};
    ssl_certificate_key  {{.Key}};
    # Like for like: nginx 1.22 leaves TLS 1.3 out by default, and Go
    # prefers X25519MLKEM768, which OpenSSL 3.0 lacks.
    ssl_protocols        TLSv1.2 TLSv1.3;
    ssl_ecdh_curve       X25519:prime256v1;
{{- end}}

    server {
        listen    127.0.0.1:{{.Listen.imap}};
        protocol  imap;
    }
    server {
        listen    127.0.0.1:{{.Listen.pop3}};
        protocol  pop3;
    }
    server {
        listen    127.0.0.1:{{.Listen.smtp}};
        protocol  smtp;
    }
{{- if .Cert}}
    server {
        listen    127.0.0.1:{{.Listen.imaps}} ssl;
        protocol  imap;
    }
    server {
        listen    127.0.0.1:{{.Listen.pop3s}} ssl;
        protocol  pop3;
    }
    server {
        listen    127.0.0.1:{{.Listen.smtps}} ssl;
        protocol  smtp;
    }
{{- end}}
}
`))

// listenerNames are the proxies' listeners; the "s" ones are implicit TLS.
var listenerNames = []string{"imap", "pop3", "smtp", "imaps", "pop3s", "smtps"}

// freePorts returns n ports free on 127.0.0.1 a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeConf writes the configuration into dir with free listen ports and
// returns the addresses by listener name.
func writeConf(dir string, data confData) (string, map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	ports, err := freePorts(len(listenerNames))
	if err != nil {
		return "", nil, err
	}
	data.Listen = map[string]int{}
	addrs := map[string]string{}
	for i, name := range listenerNames {
		if strings.HasSuffix(name, "s") && data.Cert == "" {
			continue
		}
		data.Listen[name] = ports[i]
		addrs[name] = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i]))
	}
	var b strings.Builder
	if err := confTemplate.Execute(&b, data); err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, "mail.conf")
	return path, addrs, os.WriteFile(path, []byte(b.String()), 0o644)
}

// buildMailproxy builds the example binary into dir.
func buildMailproxy(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "mailproxy")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/mailproxy/mailproxy/examples/mailproxy")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build examples/mailproxy: %v\n%s", err, out)
	}
	return bin, nil
}

// nginxInfo is the installed nginx: its binary, version and mail module.
type nginxInfo struct {
	bin, version, module string
}

// findNginx looks for nginx and its mail module; nil when either is
// missing.
func findNginx(bin string) *nginxInfo {
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("nginx"); err != nil {
			for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
				if _, err := os.Stat(p); err == nil {
					bin = p
					break
				}
			}
		}
	}
	if bin == "" {
		return nil
	}
	out, err := exec.Command(bin, "-V").CombinedOutput()
	if err != nil {
		return nil
	}
	info := &nginxInfo{bin: bin}
	if m := regexp.MustCompile(`nginx version: nginx/(\S+)`).FindSubmatch(out); m != nil {
		info.version = string(m[1])
	}
	if strings.Contains(string(out), "--with-mail ") || strings.Contains(string(out), "--with-mail\n") {
		return info // built in: no module to load
	}
	dirs := []string{"/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/usr/local/nginx/modules"}
	if m := regexp.MustCompile(`--modules-path=(\S+)`).FindSubmatch(out); m != nil {
		dirs = append([]string{string(m[1])}, dirs...)
	}
	for _, d := range dirs {
		p := filepath.Join(d, "ngx_mail_module.so")
		if _, err := os.Stat(p); err == nil {
			info.module = p
			return info
		}
	}
	return nil // nginx without its mail module
}

// waitListening waits until every address accepts a connection, or the
// process exits, or the time is up.
func waitListening(p *process, addrs map[string]string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, addr := range addrs {
		for {
			if p.exited() {
				return fmt.Errorf("exited at start: %v\n%s", p.err, p.tailLog())
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("not listening on %s after %v: %v\n%s", addr, timeout, err, p.tailLog())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// startContender starts one proxy in dir, with the configuration
// written there. Our proxy's profiles are those of -cpuprofile and
// -memprofile for the "main" instance, the same names with the
// instance's after a dot for the others.
func (h *harness) startContender(name, dir, instance string) (*contender, error) {
	c := &contender{name: name}
	switch name {
	case direct:
		c.addrs = map[string]string{}
		for proto, b := range h.backends {
			c.addrs[proto] = b.addrs()[0]
		}
		if h.tlsBackends != nil {
			for proto, b := range h.tlsBackends {
				c.addrs[proto+"s"] = b.addrs()[0]
			}
		}
		return c, nil
	case nginx:
		if h.nginx == nil {
			c.down = "not installed"
			return c, nil
		}
	}
	data := h.conf
	if h.nginx != nil {
		data.Module = h.nginx.module
	}
	conf, addrs, err := writeConf(dir, data)
	if err != nil {
		return nil, err
	}
	c.addrs = addrs
	var cmd *exec.Cmd
	if name == mailproxy {
		cmd = exec.Command(h.proxyBin, "-p", dir, "-c", conf)
		cmd.Env = os.Environ()
		suffix := ""
		if instance != "main" {
			suffix = "." + instance
		}
		if h.opts.cpuProfile != "" {
			cmd.Env = append(cmd.Env, "MAILPROXY_CPUPROFILE="+h.opts.cpuProfile+suffix)
		}
		if h.opts.memProfile != "" {
			cmd.Env = append(cmd.Env, "MAILPROXY_MEMPROFILE="+h.opts.memProfile+suffix)
		}
	} else {
		cmd = exec.Command(h.nginx.bin, "-p", dir, "-c", conf,
			"-g", fmt.Sprintf("daemon off; master_process on; worker_processes %d;", len(h.proxyCPUs)))
	}
	p, err := startProcess(cmd, h.proxyCPUs, filepath.Join(dir, "stderr.log"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c.proc = p
	if err := waitListening(p, addrs, 15*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if name == nginx {
		// The workers are up when they are there: the master listens first.
		deadline := time.Now().Add(5 * time.Second)
		for len(children(p.pid())) < len(h.proxyCPUs) {
			if time.Now().After(deadline) {
				p.stop()
				return nil, errors.New("nginx: workers did not start\n" + p.tailLog())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return c, nil
}
