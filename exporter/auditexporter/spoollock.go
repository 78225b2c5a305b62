package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// lockName is the file in spool.directory that one collector holds locked
// for as long as it runs: two writers of one write-ahead log would each
// acknowledge entries that the other's recovery then drops.
const lockName = "agentaudit.lock"

// errSpoolInUse: another process (or another exporter of this one) holds
// the spool directory.
var errSpoolInUse = errors.New("is in use by another collector")

// spoolLock is an exclusive lock on a spool directory.
type spoolLock struct{ f *os.File }

// lockSpool takes the lock on dir (creating dir), or fails at once naming
// the holder, as the holder recorded itself in the lock file.
func lockSpool(dir string) (*spoolLock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: \"directory\" %q: %w", dir, err)
	}
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("spool: \"directory\" %q: %w", dir, err)
	}
	if err := tryLock(f); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, errLocked) {
			return nil, fmt.Errorf("spool: \"directory\" %q %w (%s): give each collector its own spool directory",
				dir, errSpoolInUse, describeHolder(holder))
		}
		return nil, fmt.Errorf("spool: \"directory\" %q: locking %s: %w", dir, path, err)
	}
	host, _ := os.Hostname()
	// Who holds it, for the message of the next one that tries.
	if err := f.Truncate(0); err == nil {
		_, _ = fmt.Fprintf(f, "pid %d on host %s, since %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	}
	return &spoolLock{f: f}, nil
}

func describeHolder(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" || len(s) > 200 {
		return "holder unknown"
	}
	return "held by " + s
}

// unlock releases the lock. The file stays: removing it would let a third
// process lock a new file while a second waits on the old one.
func (l *spoolLock) unlock() {
	if l != nil && l.f != nil {
		l.f.Close() // closing the descriptor releases the lock
		l.f = nil
	}
}
