package errorlog_test

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/mailproxy/mailproxy/errorlog"
)

// A session's logger carries its connection number and addresses; the
// Tag option leaves out the time and the process id that would change
// from run to run.
func ExampleNewHandler() {
	h := errorlog.NewHandler(os.Stdout, &errorlog.HandlerOptions{Level: errorlog.LevelInfo, Tag: "mailproxy"})
	log := slog.New(h).With(errorlog.ConnKey, 17, "client", netip.MustParseAddr("192.0.2.7"), "server", netip.MustParseAddrPort("0.0.0.0:143"))
	log.Info("client login failed", "user", "alice")
	log.Info("client closed connection", errorlog.ActionKey, "in auth state")
	log.Debug("not written: below the level")
	// Output:
	// mailproxy: [info] *17 client login failed, client: 192.0.2.7, server: 0.0.0.0:143, user: "alice"
	// mailproxy: [info] *17 client closed connection while in auth state, client: 192.0.2.7, server: 0.0.0.0:143
}

// JSON lines carry nginx's level names; this record has no time, so none
// is written.
func ExampleNewHandler_json() {
	h := errorlog.NewHandler(os.Stdout, &errorlog.HandlerOptions{Level: errorlog.LevelInfo, Format: errorlog.JSON})
	r := slog.NewRecord(time.Time{}, errorlog.LevelNotice, "reopening logs", 0)
	r.AddAttrs(slog.Int(errorlog.ConnKey, 17))
	h.Handle(context.Background(), r)
	// Output:
	// {"level":"notice","msg":"reopening logs","conn":17}
}

// Several logs at once, each with its own level, as nginx writes every
// error_log of a context: the files are opened through Outputs, which
// reopens them all after a rotation.
func ExampleOutputs() {
	var outs errorlog.Outputs
	all, err := outs.Open(os.TempDir() + "/mail-debug.log")
	if err != nil {
		panic(err)
	}
	defer all.Close()
	errors, err := outs.Open("stderr")
	if err != nil {
		panic(err)
	}
	defer errors.Close()
	log := slog.New(slog.NewMultiHandler(
		errorlog.NewHandler(all, &errorlog.HandlerOptions{Level: errorlog.LevelDebug}),
		errorlog.NewHandler(errors, &errorlog.HandlerOptions{Level: errorlog.LevelError}),
	))
	log.Debug("to the file only")
	// On SIGUSR1, after logrotate renamed the file:
	if err := outs.Reopen(); err != nil {
		log.Log(context.Background(), errorlog.LevelAlert, "reopening logs failed", "err", err)
	}
	os.Remove(os.TempDir() + "/mail-debug.log")
}
