package witness

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateFile is where the last cosigned checkpoint of origin is kept:
// <dir>/<hex SHA-256 of origin>.checkpoint, the checkpoint note with the
// log's signatures and the witness's cosignatures, as served to monitors.
// The file is the witness's memory: deleting it makes the witness accept
// any checkpoint of the log next (trust on first use) again.
func stateFile(dir, origin string) string {
	return filepath.Join(dir, originHash(origin)+".checkpoint")
}

// load reads the log's state file; a missing file is a log never
// cosigned. The file is the witness's own writing, so its signatures are
// not checked again (the log's key may since have rotated), only its
// form and origin.
func (st *logState) load() error {
	data, err := os.ReadFile(st.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the state: %w", err)
	}
	text, _, err := splitNote(data)
	if err != nil {
		return fmt.Errorf("state file %s: %w", st.file, err)
	}
	c, err := parseCheckpointText(string(text))
	if err != nil {
		return fmt.Errorf("state file %s: %w", st.file, err)
	}
	if c.origin != st.origin {
		return fmt.Errorf("state file %s holds a checkpoint of %q", st.file, c.origin)
	}
	st.size, st.root, st.note = c.size, c.root, data
	return nil
}

// writeFileAtomic replaces path with data so that a crash leaves either
// the old or the new content, and the new one is on disk when it
// returns: a temporary file in the same directory, fsynced, renamed over
// path, then the directory fsynced so that the rename is durable too.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
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
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// ensureDir creates dir (and its parents) and makes its entry durable.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	return syncDir(filepath.Dir(filepath.Clean(dir)))
}

func syncDir(dir string) error {
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
