package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// maxUnixPathBytes: sun_path holds 108 bytes on Linux and 104 on macOS, the
// NUL included. bind() past it only says "invalid argument".
func maxUnixPathBytes() int {
	if runtime.GOOS == "darwin" {
		return 103
	}
	return 107
}

// maxSocketDirBytes bounds a private directory made in TMPDIR before /tmp is
// used instead, so that sockets (and directories nested in it) still fit; the
// Python side uses the same bound.
const maxSocketDirBytes = 80

// goPluginSocketName is the longest name go-plugin gives a socket:
// os.CreateTemp(dir, "plugin") appends up to 10 digits.
const goPluginSocketName = len("/plugin") + 10

// unixPathTooLong says why a socket path of pathBytes bytes in dir cannot be
// bound, or nil; the Python side words it the same.
func unixPathTooLong(dir string, pathBytes int) error {
	if pathBytes <= maxUnixPathBytes() {
		return nil
	}
	return fmt.Errorf("unix socket path in %s is too long: %d bytes (at most %d on %s); set a shorter TMPDIR or %s",
		dir, pathBytes, maxUnixPathBytes(), runtime.GOOS, envUnixSocketDir)
}

// privateTempDir makes a 0700 directory in parent or, when parent is empty,
// in TMPDIR, falling back to /tmp when that path is longer than
// maxSocketDirBytes (as the Python side does). A parent the host named is
// used as it is.
func privateTempDir(parent, pattern string) (string, error) {
	dir, err := os.MkdirTemp(parent, pattern)
	if err != nil || parent != "" || len(dir) <= maxSocketDirBytes {
		return dir, err
	}
	_ = os.Remove(dir)
	return os.MkdirTemp(filepath.Join("/", "tmp"), pattern)
}
