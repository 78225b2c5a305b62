//go:build unix

package verify

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/store"
)

// TestNotRegularFilesAreViolations: every name a reader's glob matches as
// Parquet but that is not a regular file of the trail is a violation that
// names it and says what it is; verify follows no link and opens no pipe
// (both lead to a batch outside the trail, or to a pipe no one writes to,
// which would block it), and regular files a reader sees under dot-names
// are checked, not skipped.
func TestNotRegularFilesAreViolations(t *testing.T) {
	base := t.TempDir()
	tr := writeTrail(t, filepath.Join(base, "trail"), chainIDs, 20, 10)
	outside := filepath.Join(base, "outside")
	// A batch of chain replica-9 and a pipe, outside the trail: following
	// either would show in the report (entries, a chain, or a hang).
	writeBatch(t, outside, buildChain("replica-9", 5))
	require.NoError(t, syscall.Mkfifo(filepath.Join(outside, "pipe.parquet"), 0o644))
	outBatch := filepath.Join(outside, "dt=2026-03-09", "replica-9-00000000000000000000.parquet")

	day := filepath.Join(tr.dir, "dt=2026-03-09")
	link := func(target, name string) { require.NoError(t, os.Symlink(target, filepath.Join(tr.dir, name))) }
	link(outBatch, "dt=2026-03-09/replica-0-00000000000000000020.parquet")
	link(filepath.Join(outside, "pipe.parquet"), "dt=2026-03-09/piped.parquet")
	link(filepath.Join(outside, "dt=2026-03-09"), "dt=2026-03-10")
	link(filepath.Join(outside, "gone.parquet"), "gone.parquet")
	link("replica-1-00000000000000000000.parquet", "dt=2026-03-09/inner.parquet") // inside the trail, still not followed
	require.NoError(t, syscall.Mkfifo(filepath.Join(day, "fifo.parquet"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(tr.dir, "dir.parquet"), 0o755))
	sock, err := net.Listen("unix", filepath.Join(day, "s.parquet"))
	require.NoError(t, err)
	defer sock.Close()
	// Regular files under dot-names: DuckDB's glob reads them, so verify
	// checks them (here: copies of seq 0 to 9, duplicates).
	data, err := os.ReadFile(tr.path(tr.keys["replica-1"][0]))
	require.NoError(t, err)
	writeFile(t, tr.dir, ".hidden/replica-1-00000000000000000000.parquet", data)
	writeFile(t, tr.dir, "dir.parquet/.replica-1-00000000000000000000.parquet", data)
	// Not a name a reader's glob matches: ignored, as before.
	link(outBatch, "dt=2026-03-09/notes.txt")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := Verify(ctx, store.Dir(tr.dir), Options{Workers: 2})
	require.NoError(t, err, "a name that is not a regular file is a violation, not an error")
	require.False(t, rep.Intact)

	got := map[string]string{}
	for _, v := range rep.Violations {
		if v.Kind == NotRegularFile {
			assert.Equal(t, NoSeq, v.Seq)
			got[v.File] = v.Detail
		}
	}
	want := map[string]string{
		"dt=2026-03-09/replica-0-00000000000000000020.parquet": "symlink to " + outBatch + ": ",
		"dt=2026-03-09/piped.parquet":                          "symlink to " + filepath.Join(outside, "pipe.parquet") + ": ",
		"dt=2026-03-10":                                        "symlink to directory " + filepath.Join(outside, "dt=2026-03-09") + ": ",
		"gone.parquet":                                         "symlink to " + filepath.Join(outside, "gone.parquet") + ": ",
		"dt=2026-03-09/inner.parquet":                          "symlink to replica-1-00000000000000000000.parquet: ",
		"dt=2026-03-09/fifo.parquet":                           "named pipe (FIFO): ",
		"dir.parquet":                                          "directory: ",
		"dt=2026-03-09/s.parquet":                              "socket: ",
	}
	require.Len(t, got, len(want), "violations:\n%s", joinLines(rep.Violations))
	for file, prefix := range want {
		assert.Contains(t, got, file)
		assert.True(t, strings.HasPrefix(got[file], prefix+"a reader's glob matches it"), "%s: %s", file, got[file])
	}
	// The symlink named like a batch of replica-0 is charged to that chain.
	for _, v := range rep.Violations {
		if v.File == "dt=2026-03-09/replica-0-00000000000000000020.parquet" {
			assert.Equal(t, "replica-0", v.ChainID)
		}
	}
	for _, c := range rep.Chains {
		assert.NotEqual(t, "replica-9", c.ChainID, "nothing outside the trail was read")
	}
	// 4 regular batch files, 2 copies under dot-names, 8 others.
	assert.Equal(t, 14, rep.Files)
	assert.Equal(t, int64(40+20), rep.Entries, "the trail's rows and the two copies', nothing else")
	var dupFiles []string
	for _, v := range rep.Violations {
		if v.Kind == Duplicate || v.Kind == FileNameMismatch {
			dupFiles = append(dupFiles, v.File)
		}
	}
	assert.Contains(t, dupFiles, ".hidden/replica-1-00000000000000000000.parquet")
	assert.Contains(t, dupFiles, "dir.parquet/.replica-1-00000000000000000000.parquet")
}
