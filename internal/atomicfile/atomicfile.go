// Package atomicfile replaces small local files durably: a crash leaves
// either the old content or the new, and the new one is on disk when
// WriteFile returns. The collector's local state (the recorder's head and
// clean-stop records, the approval service's approvals) and the witness's
// state use it.
package atomicfile // import "github.com/agentaudit/agentaudit/internal/atomicfile"

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// tempMark is in the name of every temporary file WriteFile makes:
// "." + the file's name + tempMark + random digits.
const tempMark = ".tmp-"

// WriteFile replaces path with data, with mode perm: a temporary file in
// the same directory, fsynced, renamed over path, then the directory
// fsynced so that the rename is durable too. A temporary file left by a
// crash is named so that IsTemp tells it.
func WriteFile(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+tempMark+"*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// IsTemp reports whether name (a base name) is a temporary file of
// WriteFile's: one a crash left, which the file it was to replace
// outlives.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempMark)
}

// SyncDir flushes dir's entries to stable storage. A file system that
// cannot sync directories (os.ErrInvalid) is not an error.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
