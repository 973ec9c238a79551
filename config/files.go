package config

import (
	"fmt"
	"path/filepath"
)

// Files reads the files a configuration names: the configuration file and
// those it includes, the certificates, keys and other files of the ssl_*
// directives. A program that reloads its configuration without the right
// to read them any more (one that started as root and serves as another
// user) passes Load what a privileged process read for it.
type Files interface {
	// ReadFile returns the content of the file at path.
	ReadFile(path string) ([]byte, error)
	// Glob returns the paths that match pattern, as filepath.Glob does
	// (include patterns).
	Glob(pattern string) ([]string, error)
}

// SystemFiles reads the file system, refusing files larger than 16 MiB
// (and endless ones such as /dev/zero). Load reads through it when
// Options.Files is nil.
var SystemFiles Files = systemFiles{}

type systemFiles struct{}

func (systemFiles) ReadFile(path string) ([]byte, error) { return readBounded(path, path, maxFileSize) }

func (systemFiles) Glob(pattern string) ([]string, error) { return filepath.Glob(pattern) }

func (o Options) files() Files {
	if o.Files == nil {
		return SystemFiles
	}
	return o.Files
}

// readLimited reads the file at path through files, refusing one larger
// than limit bytes; name is the file in that error.
func readLimited(files Files, path, name string, limit int) ([]byte, error) {
	if files == SystemFiles {
		return readBounded(path, name, limit)
	}
	b, err := files.ReadFile(path)
	if err == nil && len(b) > limit {
		err = fmt.Errorf("read %s: file larger than %d bytes", name, limit)
	}
	return b, err
}
