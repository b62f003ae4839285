package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
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

// tmpFileName matches exactly the names createLockedTemp gives (a key's
// base64url name has no '.', so no key can match).
var tmpFileName = regexp.MustCompile(`^` + regexp.QuoteMeta(tmpFilePrefix) + `[0-9a-f]{16}$`)

// openFileStore opens the store in dir and removes the temporary files of
// Puts that died (a SIGKILL mid-Put leaves a full-size temporary file). A
// writer holds an exclusive flock on its temporary file, so a file nobody
// holds is stale; another live plugin's file in progress is left alone. Only
// what the store can prove it made goes: a name tmpFileName matches, a
// regular file (by lstat: never a symlink, FIFO or directory, and nothing
// that could block is opened), owned by this user. A file the store may not
// remove (a read-only directory) stays, and the store opens for reading.
func openFileStore(dir string) (*fileStore, error) {
	s := &fileStore{dir: dir}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) { // Put makes a missing one
		return nil, err
	}
	for _, entry := range entries {
		if !tmpFileName.MatchString(entry.Name()) || !entry.Type().IsRegular() {
			continue
		}
		if err := removeIfUnlocked(filepath.Join(dir, entry.Name())); err != nil {
			return nil, fmt.Errorf("removing stale temporary file: %w", err)
		}
	}
	return s, nil
}

// cannotRemove: the store may not remove a leftover here (housekeeping only).
func cannotRemove(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EROFS)
}

// isOwnFile: a regular file of this user's.
func isOwnFile(st *syscall.Stat_t) bool {
	return st.Mode&syscall.S_IFMT == syscall.S_IFREG && int(st.Uid) == os.Geteuid()
}

// removeIfUnlocked removes path unless a live writer holds its lock. O_NONBLOCK
// and O_NOFOLLOW: should the name have become a FIFO or a symlink since the
// directory was listed, the open neither blocks nor follows; fstat then rules
// it out.
func removeIfUnlocked(path string) error {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ELOOP) || cannotRemove(err) {
		return nil // renamed or removed meanwhile, now a symlink, or not ours to read
	}
	if err != nil {
		return err
	}
	defer func() { _ = syscall.Close(fd) }()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return err
	}
	if !isOwnFile(&st) {
		return nil
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil // a Put in progress
		}
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) && !cannotRemove(err) {
		return err
	}
	return nil
}

// createLockedTemp creates a temporary file (tmpFileName) and locks it. If a
// store opening at that moment removed it before the lock was taken, it is
// created anew; a name already taken only costs another name.
func createLockedTemp(dir string) (*os.File, error) {
	for {
		name := filepath.Join(dir, fmt.Sprintf("%s%016x", tmpFilePrefix, rand.Uint64()))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
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
