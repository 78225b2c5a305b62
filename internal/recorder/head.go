package recorder

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

// headMarker is the chain head as of the last batch written to local disk
// (the spool or the file store), kept in <spool.directory>/head-<chain_id>
// with the identity of the store it belongs to. It lets a collector
// restarted while the S3 bucket is unreachable resume its chain from local
// state instead of refusing to start. It is only ever a lower bound: the
// store and the write-ahead log can be further along. A marker of another
// store (the configuration now points elsewhere) is ignored.
const headMarkerTag = "agentaudit-head v2"

// headMarker is where one chain's head marker for one store is kept.
type headMarker struct {
	spoolDir, chainID, storeID string
}

func (m headMarker) path() string {
	return filepath.Join(m.spoolDir, "head-"+m.chainID)
}

// read returns the head recorded for the store, or ok false when there is
// none.
func (m headMarker) read() (h chain.Head, ok bool, err error) {
	path := m.path()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return chain.Head{}, false, nil
	}
	if err != nil {
		return chain.Head{}, false, fmt.Errorf("reading the chain head marker: %w", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 5 || lines[0] != headMarkerTag || lines[1] != m.chainID {
		return chain.Head{}, false, fmt.Errorf("chain head marker %s is malformed", path)
	}
	if lines[2] != m.storeID {
		return chain.Head{}, false, nil
	}
	size, err := strconv.ParseInt(lines[3], 10, 64)
	if err != nil || size < 1 || len(lines[4]) != 64 {
		return chain.Head{}, false, fmt.Errorf("chain head marker %s is malformed", path)
	}
	return chain.Head{Size: size, Hash: lines[4]}, true, nil
}

// write records h durably (atomicfile).
func (m headMarker) write(h chain.Head) error {
	path := m.path()
	data := fmt.Sprintf("%s\n%s\n%s\n%d\n%s\n", headMarkerTag, m.chainID, m.storeID, h.Size, h.Hash)
	if err := atomicfile.WriteFile(path, []byte(data), 0o640); err != nil {
		return fmt.Errorf("writing the chain head marker %s: %w", path, err)
	}
	return nil
}

// remove removes the marker, so that a stale one cannot be read.
func (m headMarker) remove() { _ = os.Remove(m.path()) }
