package witness

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/agentaudit/agentaudit/internal/atomicfile"
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

// ensureDir creates dir (and its parents) and makes its entry durable.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(filepath.Clean(dir)))
}
