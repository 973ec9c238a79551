//go:build !unix

package mailproxy

import (
	"errors"
	"net"
	"os"
)

var errNoInheritance = errors.New("passing sockets to another process is not supported on this system")

func dupListener(net.Listener, string) (*os.File, error) { return nil, errNoInheritance }

func checkListening(int) error { return errNoInheritance }
