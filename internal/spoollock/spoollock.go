// Package spoollock is the exclusive lock a collector holds on its spool
// directory for as long as it runs: two writers of one write-ahead log
// would each acknowledge entries that the other's recovery then drops.
// auditctl takes it too before it changes anything in a spool.
//
// It is flock(2) on <dir>/agentaudit.lock, which also records the holder
// (pid, host, since when) for the message of whoever is refused. flock
// locks belong to the open file: a second opener in the same process is
// refused too, and the kernel releases a dead process's lock.
package spoollock // import "github.com/agentaudit/agentaudit/internal/spoollock"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// FileName is the lock file in the spool directory.
const FileName = "agentaudit.lock"

// ErrInUse: another process (or another opener in this one) holds the
// lock. Check with errors.Is.
var ErrInUse = errors.New("is in use by another collector")

// Lock is a held lock on a spool directory.
type Lock struct{ f *os.File }

// Acquire takes the lock on dir (creating dir), or fails at once with an
// error wrapping ErrInUse that names dir and the holder.
func Acquire(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("%q: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", dir, err)
	}
	if err := tryLock(f); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, errLocked) {
			return nil, fmt.Errorf("%q %w (%s): give each collector its own spool directory", dir, ErrInUse, describeHolder(holder))
		}
		return nil, fmt.Errorf("%q: locking %s: %w", dir, path, err)
	}
	host, _ := os.Hostname()
	if err := f.Truncate(0); err == nil {
		_, _ = fmt.Fprintf(f, "pid %d on host %s, since %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	}
	return &Lock{f: f}, nil
}

func describeHolder(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" || len(s) > 200 {
		return "holder unknown"
	}
	return "held by " + s
}

// Release releases the lock; on a nil Lock it does nothing. The file
// stays: removing it would let a third process lock a new file while a
// second waits on the old one.
func (l *Lock) Release() {
	if l != nil && l.f != nil {
		l.f.Close() // closing the descriptor releases the lock
		l.f = nil
	}
}
