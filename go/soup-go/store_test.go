package main

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

func TestStoreRoundTrip(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	for _, v := range [][]byte{[]byte("hello"), {}, {0, 1, 2, 255}} {
		if err := s.Put("k", v); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get("k")
		if err != nil || string(got) != string(v) {
			t.Fatalf("Get = %q, %v; want %q", got, err, v)
		}
	}
}

func TestStoreKeyErrors(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	if err := s.Put("", []byte("x")); !errors.Is(err, errEmptyKey) || err.Error() != "key must not be empty" {
		t.Errorf("Put empty key: %v", err)
	}
	if _, err := s.Get(""); !errors.Is(err, errEmptyKey) {
		t.Errorf("Get empty key: %v", err)
	}
	long := strings.Repeat("k", 181)
	err := s.Put(long, nil)
	if err == nil || err.Error() != "key is too long: 181 bytes (at most 180)" {
		t.Errorf("Put long key: %v", err)
	}
	// The limit is in UTF-8 bytes: 90 two-byte runes are exactly 180 bytes.
	if err := s.Put(strings.Repeat("é", 90), []byte("ok")); err != nil {
		t.Errorf("Put 180-byte key: %v", err)
	}
	if err := s.Put(strings.Repeat("é", 91), nil); err == nil || !strings.Contains(err.Error(), "182 bytes") {
		t.Errorf("Put 182-byte key: %v", err)
	}
	if _, err := s.Get("missing"); !errors.Is(err, errKeyNotFound) || err.Error() != "key not found" {
		t.Errorf("Get missing: %v", err)
	}
}

func TestStorePathTricksStayInside(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "kv")
	s := mustOpen(t, dir)
	keys := []string{"../x", "a/b", "..", ".", "/etc/passwd", `..\x`, ".tmp-x", "ok"}
	for _, k := range keys {
		if err := s.Put(k, []byte(k)); err != nil {
			t.Fatalf("Put %q: %v", k, err)
		}
	}
	for _, k := range keys {
		if got, err := s.Get(k); err != nil || string(got) != k {
			t.Fatalf("Get %q = %q, %v", k, got, err)
		}
	}
	top, _ := os.ReadDir(parent)
	if len(top) != 1 || top[0].Name() != "kv" {
		t.Fatalf("files outside the store dir: %v", top)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(keys) {
		t.Fatalf("want %d files, got %d", len(keys), len(entries))
	}
	safe := regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	for _, e := range entries {
		if !safe.MatchString(e.Name()) || !e.Type().IsRegular() {
			t.Errorf("unexpected entry %q (temp file left behind or unsafe name)", e.Name())
		}
	}
}

func TestStoreCreatesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s := mustOpen(t, dir)
	if _, err := s.Get("k"); !errors.Is(err, errKeyNotFound) {
		t.Fatalf("Get before dir exists: %v", err)
	}
	if err := s.Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir: %v, %v", fi, err)
	}
}

func TestKeyFilename(t *testing.T) {
	name, err := keyFilename("soup-test-key")
	if err != nil || name != "c291cC10ZXN0LWtleQ" {
		t.Fatalf("keyFilename = %q, %v", name, err)
	}
}

func TestDirSyncUnsupportedErrnosAreTolerated(t *testing.T) {
	// as d.Sync() reports them: wrapped in a *PathError
	for _, errno := range []syscall.Errno{syscall.EINVAL, syscall.ENOTSUP, syscall.EBADF} {
		if err := (&os.PathError{Op: "sync", Path: "/kv", Err: errno}); !dirSyncUnsupported(err) {
			t.Errorf("%v not tolerated", err)
		}
	}
	if dirSyncUnsupported(&os.PathError{Op: "sync", Path: "/kv", Err: syscall.EIO}) {
		t.Error("EIO tolerated: a real sync failure must fail the Put")
	}
}

func mustOpen(t *testing.T, dir string) *fileStore {
	t.Helper()
	s, err := openFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A Put that died leaves a temporary file nobody holds: opening removes it. A
// Put in progress (its writer holds the lock) is left alone, and so are keys.
func TestOpenRemovesStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, tmpFilePrefix+"0123456789abcdef")
	if err := os.WriteFile(stale, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := createLockedTemp(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Close() }()
	s := mustOpen(t, dir)
	if err := s.Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, dir)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file still there: %v", err)
	}
	if _, err := os.Stat(busy.Name()); err != nil {
		t.Errorf("a live writer's temp file was removed: %v", err)
	}
	if got, err := s.Get("k"); err != nil || string(got) != "v" {
		t.Errorf("Get k = %q, %v", got, err)
	}
}

// createLockedTemp never hands out a file that an opening store removed
// between its creation and the lock: the file it returns is still linked.
func TestCreateLockedTempIsLinked(t *testing.T) {
	dir := t.TempDir()
	f, err := createLockedTemp(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if !tmpFileName.MatchString(filepath.Base(f.Name())) {
		t.Fatalf("name %q", f.Name())
	}
	if err := removeIfUnlocked(f.Name()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Name()); err != nil {
		t.Fatalf("locked temp file removed: %v", err)
	}
}

// Opening a store removes only what it made: a user's files, a symlink, a
// FIFO (opening it would block), a directory with a name of the store's own
// pattern, and names close to it all stay, and opening returns.
func TestOpenLeavesWhatTheStoreDidNotMake(t *testing.T) {
	dir := t.TempDir()
	userFiles := []string{
		".tmp-notes", ".tmp-0123456789abcdef", tmpFilePrefix, tmpFilePrefix + "0123456789ABCDEF",
		tmpFilePrefix + "0123456789abcdef0", tmpFilePrefix + "0123456789abcdef.bak",
	}
	for _, name := range userFiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("the user's"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("a symlink's target"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, tmpFilePrefix+"000000000000000a")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, tmpFilePrefix+"000000000000000b"), 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, tmpFilePrefix+"000000000000000c")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "inside"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := dirNames(t, dir)
	mustOpen(t, dir) // with the old open of every .tmp-* name this blocked on the FIFO
	if after := dirNames(t, dir); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("opening changed the directory:\nbefore %q\nafter  %q", before, after)
	}
	for _, name := range userFiles {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != "the user's" {
			t.Errorf("%s: %q, %v", name, got, err)
		}
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
