package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts writing f's dirty pages to disk without waiting
// (sync_file_range SYNC_FILE_RANGE_WRITE), so that the fsyncs that follow
// for a group of files find their data allocated and on its way together:
// on ext4 the first fsync then commits the journal for all of them. It
// makes nothing durable by itself, and an error is left for fsync to
// report.
func startWriteback(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SyncFileRange(int(fd), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	})
}
