package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// inProcessHelper serves the helper's requests for the configuration of
// args in this process, over a real socket pair, and returns the
// program's end.
func inProcessHelper(t *testing.T, args helperArgs) *helper {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]*fdConn
	for i, max := range []int{maxReply, maxRequest} { // the program's end, the helper's
		f := os.NewFile(uintptr(fds[i]), "helper")
		conns[i], err = fdConnOf(f, max)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	s := newPrivileged(args)
	done := make(chan struct{})
	go func() {
		s.serve(conns[1])
		close(done)
	}()
	t.Cleanup(func() {
		conns[0].Close()
		<-done
	})
	return &helper{conn: conns[0]}
}

// The helper opens, for appending, the files that the error_log
// directives of the configuration name, and those of a configuration
// loaded since; no other file, and no link planted in a log's place.
func TestHelperOpensOnlyTheLogs(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "mail.conf")
	writeConf := func(serverLog string) {
		t.Helper()
		src := `error_log main.log info;
mail {
    auth_http 127.0.0.1:9/auth;
    error_log symlink.log;
    error_log hardlink.log;
    server { listen 127.0.0.1:1143; protocol imap; error_log ` + serverLog + `; }
}
`
		if err := os.WriteFile(conf, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConf("imap.log")
	path := func(name string) string { return filepath.Join(dir, name) }
	if err := os.WriteFile(path("main.log"), []byte("before\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"other", "hardlink.log"} {
		if err := os.WriteFile(path(name+".target"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(path("other.target"), path("symlink.log")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(path("hardlink.log.target"), path("hardlink.log")); err != nil {
		t.Fatal(err)
	}
	h := inProcessHelper(t, helperArgs{Conf: conf, Args: []string{"mailproxy", "-c", conf}})

	// reloaded is what the program does on HUP: the helper loads the
	// configuration, then the program's load opens its logs.
	reloaded := func() {
		t.Helper()
		writeConf("imap-new.log")
		if _, err := h.files(); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, path string
		before     func()
		refused    string // "" when the file is opened
		want       string // the file after "line\n" is written, when opened
	}{
		{"the main log, appended to", path("main.log"), nil, "", "before\nline\n"},
		{"a server's log, created", path("imap.log"), nil, "", "line\n"},
		{"the same path, not clean", dir + "/./imap.log", nil, "", "line\nline\n"},
		{"another file in the folder", path("other.log"), nil, "not a log file of the configuration", ""},
		{"the configuration", conf, nil, "not a log file of the configuration", ""},
		{"a system file", "/etc/passwd", nil, "not a log file of the configuration", ""},
		{"a symbolic link in a log's place", path("symlink.log"), nil, "is a symbolic link", ""},
		{"a hard link in a log's place", path("hardlink.log"), nil, "has 2 hard links", ""},
		{"the log of a reloaded configuration", path("imap-new.log"), reloaded, "", "line\n"},
		{"the log of the first configuration, still running", path("imap.log"), nil, "", "line\nline\nline\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != nil {
				tt.before()
			}
			f, err := h.openLog(tt.path)
			if tt.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("openLog: %v, want %q", err, tt.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			flags, err := fcntlFlags(f)
			if err != nil {
				t.Fatal(err)
			}
			if flags&syscall.O_ACCMODE != syscall.O_WRONLY || flags&syscall.O_APPEND == 0 {
				t.Errorf("flags %#o, want write only, append", flags)
			}
			if _, err := f.WriteString("line\n"); err != nil {
				t.Fatal(err)
			}
			if got := readLog(t, tt.path); got != tt.want {
				t.Errorf("the file holds %q, want %q", got, tt.want)
			}
			if fi, err := os.Stat(tt.path); err != nil || fi.Mode().Perm()&0o644 != 0o644 {
				t.Errorf("mode: %v, %v", fi, err)
			}
		})
	}
	for _, name := range []string{"other.log"} {
		if _, err := os.Stat(path(name)); !os.IsNotExist(err) {
			t.Errorf("%s was created (%v)", name, err)
		}
	}
	for _, name := range []string{"other.target", "hardlink.log.target"} {
		if got := readLog(t, path(name)); got != "" {
			t.Errorf("%s, behind a link, was written: %q", name, got)
		}
	}
}

// fcntlFlags returns the file status flags of f.
func fcntlFlags(f *os.File) (int, error) {
	flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_GETFL, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(flags), nil
}
