package recorder

// Whether the previous run stopped cleanly: Shutdown records the chain's
// head in <spool.directory>/stopped-<chain_id> once everything
// acknowledged is durable and the log is closed; Start reads the record
// and removes it. A start that finds the record matching the head it
// resumes from follows a clean stop; one that finds none, or another
// head, follows a crash, a kill or a failed shutdown. The exporter's start
// marker says which (exporter/auditexporter/markers.go, docs/FORMAT.md
// "Coverage").

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/agentaudit/agentaudit/internal/atomicfile"
	"github.com/agentaudit/agentaudit/internal/chain"
)

// Previous says how the run before this one ended.
type Previous string

const (
	// FirstStart: the chain is empty; no run recorded anything before.
	FirstStart Previous = "first"
	// CleanStop: the previous run shut down cleanly at the head this run
	// resumes from.
	CleanStop Previous = "clean"
	// UncleanStop: the spool holds no record of a clean stop at this
	// head: the previous run crashed, was killed, lost power or failed to
	// shut down (what it acknowledged was recovered from the write-ahead
	// log, but spans sent to it while it was dying may not have been
	// acknowledged), or it ran with another spool directory. The trail
	// tells which: a clean stop left its stop marker as the last entry.
	UncleanStop Previous = "unclean"
)

const stoppedTag = "agentaudit-stopped v1"

func stoppedPath(spoolDir, chainID string) string {
	return filepath.Join(spoolDir, "stopped-"+chainID)
}

// readStopped reads and removes the record of a clean stop, and says how
// the previous run ended given the head this run resumes from.
func readStopped(spoolDir, chainID string, head chain.Head) (Previous, error) {
	path := stoppedPath(spoolDir, chainID)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if head.Size == 0 {
			return FirstStart, nil
		}
		return UncleanStop, nil
	case err != nil:
		return "", fmt.Errorf("reading the record of the last stop: %w", err)
	}
	// Removed before anything is appended: should this run crash, the
	// next start must not find it.
	if err := os.Remove(path); err != nil {
		return "", fmt.Errorf("removing the record of the last stop: %w", err)
	}
	if err := atomicfile.SyncDir(spoolDir); err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) == 4 && lines[0] == stoppedTag && lines[1] == chainID {
		if size, err := strconv.ParseInt(lines[2], 10, 64); err == nil && size == head.Size && lines[3] == head.Hash {
			if head.Size == 0 {
				return FirstStart, nil
			}
			return CleanStop, nil
		}
	}
	return UncleanStop, nil
}

// writeStopped records a clean stop at head (atomicfile).
func writeStopped(spoolDir, chainID string, head chain.Head) error {
	path := stoppedPath(spoolDir, chainID)
	data := fmt.Sprintf("%s\n%s\n%d\n%s\n", stoppedTag, chainID, head.Size, head.Hash)
	if err := atomicfile.WriteFile(path, []byte(data), 0o640); err != nil {
		return fmt.Errorf("recording the clean stop in %s: %w", path, err)
	}
	return nil
}
