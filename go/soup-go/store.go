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
	errKeyNotFound = errors.New(keyNotFoundMsg)
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

// openFileStore opens the store in dir and removes the temporary files of
// Puts that died (a SIGKILL mid-Put leaves a full-size .tmp-* file). A
// writer holds an exclusive flock on its temporary file, so a file nobody
// holds is stale; another live plugin's file in progress is left alone.
func openFileStore(dir string) (*fileStore, error) {
	s := &fileStore{dir: dir}
	matches, err := filepath.Glob(filepath.Join(dir, tmpFilePrefix+"*"))
	if err != nil {
		return nil, err
	}
	for _, path := range matches {
		if err := removeIfUnlocked(path); err != nil {
			return nil, fmt.Errorf("removing stale temporary file: %w", err)
		}
	}
	return s, nil
}

// removeIfUnlocked removes path unless a live writer holds its lock.
func removeIfUnlocked(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // renamed or removed meanwhile
	}
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil // a Put in progress
		}
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// createLockedTemp creates a .tmp-* file and locks it. If a store opening
// at that moment removed it before the lock was taken, it is created anew.
func createLockedTemp(dir string) (*os.File, error) {
	for {
		f, err := os.CreateTemp(dir, tmpFilePrefix+"*")
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
			return nil, err
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
			_ = f.Close()
			return nil, err
		}
		if st.Nlink > 0 {
			return f, nil
		}
		_ = f.Close()
	}
}

// Put writes value under key: temp file in the same directory, fsync, rename
// over the target (still holding the temp file's lock, so no opening store
// takes it for stale), fsync the directory (so the rename survives a crash).
func (s *fileStore) Put(key string, value []byte) error {
	name, err := keyFilename(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	tmp, err := createLockedTemp(s.dir)
	if err != nil {
		return err
	}
	err = writeAndRename(tmp, value, filepath.Join(s.dir, name))
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return syncDir(s.dir)
}

func writeAndRename(tmp *os.File, value []byte, target string) error {
	if _, err := tmp.Write(value); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), target)
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
