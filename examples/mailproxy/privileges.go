package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"slices"
	"strconv"
	"syscall"
)

// Started as root, the program serves as an unprivileged user, as nginx's
// workers do: nginx's default user is nobody, with the group nogroup where
// the system has one (Debian) and nobody elsewhere. It switches once the
// listening sockets are open and the certificates and keys are read. A
// helper process that stays root (helper.go) then reads the files of a
// reload, opens the log files, starts the new binary of an upgrade and
// removes the pid file; a new port below 1024 cannot be bound any more,
// and such a reload fails with the old configuration running: that needs
// a restart.

// Who serves when the configuration has no user directive.
const (
	defaultUser  = "nobody"
	defaultGroup = "nogroup"
)

// credential is whom the program serves as.
type credential struct {
	user, group string
	uid, gid    int
	groups      []int // the supplementary groups: the user's, as initgroups(3) gives them
}

// lookupCredential finds the user and group of the user directive (name
// and group empty when it is not set). Without a group, the group named as
// the user serves, as in nginx; the default user has the default group,
// or its own when the system has no nogroup.
func lookupCredential(name, group string) (*credential, error) {
	if name == "" {
		name, group = defaultUser, defaultGroup
		if _, err := user.LookupGroup(group); err != nil {
			group = ""
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	if group == "" {
		group = name
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return nil, fmt.Errorf("group %q: %w", group, err)
	}
	c := &credential{user: name, group: group}
	if c.uid, err = strconv.Atoi(u.Uid); err != nil {
		return nil, fmt.Errorf("user %q: uid %q: %w", name, u.Uid, err)
	}
	if c.gid, err = strconv.Atoi(g.Gid); err != nil {
		return nil, fmt.Errorf("group %q: gid %q: %w", group, g.Gid, err)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("user %q: groups: %w", name, err)
	}
	c.groups = []int{c.gid}
	for _, id := range ids {
		if n, err := strconv.Atoi(id); err == nil && !slices.Contains(c.groups, n) {
			c.groups = append(c.groups, n)
		}
	}
	return c, nil
}

// switchTo makes the whole process (every thread, Go 1.16 and later) run
// as c, for good: the supplementary groups, then the group, then the user.
func switchTo(c *credential) error {
	if err := syscall.Setgroups(c.groups); err != nil {
		return fmt.Errorf("setgroups(%v): %w", c.groups, err)
	}
	if err := syscall.Setgid(c.gid); err != nil {
		return fmt.Errorf("setgid(%d): %w", c.gid, err)
	}
	if err := syscall.Setuid(c.uid); err != nil {
		return fmt.Errorf("setuid(%d): %w", c.uid, err)
	}
	if c.uid != 0 && syscall.Setuid(0) == nil {
		return errors.New("setuid(0) succeeded after the switch")
	}
	return nil
}

// privileges decides whether the program switches user: only when it
// runs as root, on its own (not inside a test: see wholeProcess). Without
// root, a user directive is ignored with a warning, as in nginx.
func privileges(name, group string, log *slog.Logger) (*credential, error) {
	if !wholeProcess {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		if name != "" {
			log.Warn("the \"user\" directive makes sense only if the program runs as root; ignored", "user", name)
		}
		return nil, nil
	}
	c, err := lookupCredential(name, group)
	if err != nil || c.uid == 0 {
		return nil, err // serving as root was asked for
	}
	return c, nil
}

// servingAs is whom the process serves as since it switched from root;
// nil before, or without a switch.
var servingAs *credential

// explainReload adds to the error of a reload refused a socket after the
// switch of user what it takes.
func explainReload(err error) error {
	if servingAs != nil && errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("%w (serving as %s, uid %d: a new port below 1024 needs a restart)", err, servingAs.user, servingAs.uid)
	}
	return err
}

// raiseFileLimit sets the soft limit of open descriptors to n
// (worker_rlimit_nofile), and the hard limit too when n is above it and
// the process may raise it (root); otherwise the soft limit goes as far as
// the hard one, and the error says so. It returns the soft limit in force.
func raiseFileLimit(n int) (uint64, error) {
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		return 0, err
	}
	want := syscall.Rlimit{Cur: uint64(n), Max: max(old.Max, uint64(n))}
	err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
	if err == nil {
		return want.Cur, nil
	}
	capped := syscall.Rlimit{Cur: old.Max, Max: old.Max}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &capped) != nil {
		capped.Cur = old.Cur
	}
	return capped.Cur, fmt.Errorf("worker_rlimit_nofile %d: setrlimit(RLIMIT_NOFILE): %w; the limit is %d", n, err, capped.Cur)
}
