package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// maxKeyBytes bounds a key so that its base64url file name (4/3 of the bytes)
// stays well below the 255-byte name limit of common file systems.
const maxKeyBytes = 180

var (
	errEmptyKey    = errors.New("key must not be empty")
	errKeyNotFound = errors.New("key not found")
)

// keyTooLongError carries the length so the gRPC message can name it.
type keyTooLongError struct{ n int }

func (e keyTooLongError) Error() string {
	return fmt.Sprintf("key is too long: %d bytes (at most %d)", e.n, maxKeyBytes)
}

// keyFilename validates key and returns its file name: URL-safe base64 without
// padding. That alphabet has neither '.' nor '/', so no key can name a path
// outside the store directory.
func keyFilename(key string) (string, error) {
	if key == "" {
		return "", errEmptyKey
	}
	if len(key) > maxKeyBytes {
		return "", keyTooLongError{len(key)}
	}
	return base64.RawURLEncoding.EncodeToString([]byte(key)), nil
}

// fileStore keeps one file per key in dir. Writes are atomic: a reader sees
// the old value or the new one, never a torn file.
type fileStore struct {
	dir string
}

func newFileStore(dir string) *fileStore { return &fileStore{dir: dir} }

// Put writes value under key: temp file in the same directory, fsync, rename
// over the target, fsync the directory (so the rename itself survives a crash).
func (s *fileStore) Put(key string, value []byte) (err error) {
	name, err := keyFilename(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(value); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), filepath.Join(s.dir, name)); err != nil {
		return err
	}
	return syncDir(s.dir)
}

// Get returns the value of key, or errKeyNotFound.
func (s *fileStore) Get(key string) ([]byte, error) {
	name, err := keyFilename(key)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(s.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errKeyNotFound
	}
	return data, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	if err := d.Sync(); err != nil && !dirSyncUnsupported(err) {
		return err
	}
	return nil
}

// dirSyncUnsupported: some file systems cannot fsync a directory and say so
// with EINVAL, ENOTSUP or EBADF (e.g. some FUSE and network file systems).
// The file itself was fsynced before the rename, so the Put still stands; the
// Python store tolerates the same errno set, and both must answer alike.
func dirSyncUnsupported(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EBADF)
}
