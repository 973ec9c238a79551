package mailproxy

// Listening sockets opened by another process: handed down by the old
// binary in an upgrade, as nginx's USR2 hands them down, or passed by
// systemd's socket activation. The Proxy adopts them instead of binding
// (Proxy.Inherited), and hands its own to a new process (Proxy.Files).

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
)

// InheritedListeners returns the listening sockets that a parent process
// passed down and named in the environment variable env, in the format of
// nginx's NGINX variable: the descriptor numbers, each followed by ";"
// ("3;4;5;"; ":" separates too). The variable is unset, so that the
// program's own children do not take the sockets for theirs. Without the
// variable, there are no listeners and no error.
//
// A descriptor that is not a listening socket is an error, and is left
// open: it is not this function's to close. On error, no listener is
// returned and the sockets it named are closed.
func InheritedListeners(env string) ([]net.Listener, error) {
	v, ok := os.LookupEnv(env)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(env)
	fds, err := parseDescriptors(v)
	if err != nil {
		return nil, fmt.Errorf("mailproxy: %s=%q: %w", env, v, err)
	}
	return fileListeners(fds, nil)
}

// parseDescriptors reads nginx's list of descriptors: "3;4;5;".
func parseDescriptors(v string) ([]int, error) {
	var fds []int
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ';' || r == ':' }) {
		fd, err := strconv.Atoi(f)
		switch {
		case err != nil || fd < 3:
			return nil, fmt.Errorf("invalid socket number %q", f)
		case slices.Contains(fds, fd):
			return nil, fmt.Errorf("socket %d named twice", fd)
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

// SystemdListeners returns the listening sockets systemd passes to a
// socket-activated service, as sd_listen_fds(3) finds them: LISTEN_FDS
// descriptors from 3 on, when LISTEN_PID is this process, named in
// LISTEN_FDNAMES. The three variables are unset, so that the program's own
// children do not take the sockets for theirs. Without them, or when they
// are meant for another process, there are no listeners and no error.
//
// A descriptor that is not a listening socket (a datagram socket, or a
// connection passed by Accept=yes) is an error. On error, no listener is
// returned and the sockets are closed.
func SystemdListeners() ([]net.Listener, error) {
	pid, n, names := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES")
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		os.Unsetenv(v)
	}
	fds, err := systemdDescriptors(pid, n, os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("mailproxy: systemd sockets: %w", err)
	}
	return fileListeners(fds, strings.Split(names, ":"))
}

// systemdDescriptors reads LISTEN_PID and LISTEN_FDS for the process self.
func systemdDescriptors(pid, n string, self int) ([]int, error) {
	if pid == "" || n == "" || pid != strconv.Itoa(self) {
		return nil, nil
	}
	count, err := strconv.Atoi(n)
	if err != nil || count < 0 {
		return nil, fmt.Errorf("LISTEN_FDS=%q: not a number of sockets", n)
	}
	fds := make([]int, count)
	for i := range fds {
		fds[i] = 3 + i // SD_LISTEN_FDS_START
	}
	return fds, nil
}

// fileListeners makes listeners of the descriptors fds, which a parent
// process passed down; names[i], when there, names fds[i] in errors. Each
// listener holds a duplicate, and the descriptor itself is closed. On
// error, none is left open but the descriptors that are not listening
// sockets.
func fileListeners(fds []int, names []string) ([]net.Listener, error) {
	var lns []net.Listener
	var errs []error
	for i, fd := range fds {
		what := "descriptor " + strconv.Itoa(fd)
		if i < len(names) && names[i] != "" {
			what = fmt.Sprintf("%s (%s)", what, names[i])
		}
		if err := checkListening(fd); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			continue
		}
		f := os.NewFile(uintptr(fd), what)
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			continue
		}
		lns = append(lns, ln)
	}
	if len(errs) > 0 {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, errors.Join(errs...)
	}
	return lns, nil
}

var errNotListening = errors.New("not a listening socket")

// listenerEndpoint is the endpoint an inherited listener serves, in the
// form makePlan gives the endpoints of the listen directives.
func listenerEndpoint(ln net.Listener) (Endpoint, bool) {
	switch a := ln.Addr().(type) {
	case *net.TCPAddr:
		return ipEndpoint(a.IP, strconv.Itoa(a.Port)), true
	case *net.UnixAddr:
		return Endpoint{Network: "unix", Address: a.Name}, a.Net == "unix" && a.Name != ""
	}
	return Endpoint{}, false
}

// takeInherited sorts p.Inherited by endpoint for openSockets to adopt,
// and closes those that serve no endpoint a listen directive can name. The
// caller holds p.mu.
func (p *Proxy) takeInherited() {
	p.inherited = make(map[string]net.Listener, len(p.Inherited))
	for _, ln := range p.Inherited {
		ep, ok := listenerEndpoint(ln)
		if _, dup := p.inherited[ep.key()]; !ok || dup {
			p.logger().Warn("inherited socket matches no listen directive; closed", "listen", ln.Addr().String())
			ln.Close()
			continue
		}
		p.inherited[ep.key()] = ln
	}
}

// adopt returns the inherited socket for the planned socket key, with the
// socket options of sp applied, or nil when there is none. The caller holds
// p.mu.
func (p *Proxy) adopt(key string, sp *socketPlan) (net.Listener, error) {
	ln, ok := p.inherited[key]
	if !ok {
		return nil, nil
	}
	delete(p.inherited, key)
	if err := applyOptions(ln, sp.endpoint, sp.config); err != nil {
		ln.Close()
		return nil, err
	}
	p.logger().Info("listening on an inherited socket", "listen", sp.name)
	return ln, nil
}

// dropInherited closes the inherited sockets that no listen directive
// took, logging them when Listen succeeded (as nginx closes them), and
// silently when it failed. The caller holds p.mu.
func (p *Proxy) dropInherited(started bool) {
	for _, key := range slices.Sorted(maps.Keys(p.inherited)) {
		ln := p.inherited[key]
		if started {
			p.logger().Warn("inherited socket matches no listen directive; closed", "listen", ln.Addr().String())
		}
		ln.Close()
	}
	p.inherited = nil
}

// Files returns a duplicate of each listening socket the Proxy has open,
// for a program that hands them to a new process: os/exec's
// Cmd.ExtraFiles makes the i-th one descriptor 3+i there, and the new
// process gives them to its Proxy's Inherited (InheritedListeners reads
// them back from nginx's notation, "3;4;5;"). Both processes then accept
// on the same sockets, so that no connection is refused while one takes
// over from the other. The caller closes the files once the new process
// has started.
//
// From then on the Proxy leaves unix socket files in place when it closes
// their sockets: the new process serves them.
func (p *Proxy) Files() ([]*os.File, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var files []*os.File
	for _, key := range slices.Sorted(maps.Keys(p.sockets)) {
		s := p.sockets[key]
		f, err := dupListener(s.ln, s.endpoint.String())
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("mailproxy: %s: %w", s.name, err)
		}
		if ul, ok := s.ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false)
		}
		files = append(files, f)
	}
	return files, nil
}
