//go:build !linux

package store

import "os"

// startWriteback does nothing where sync_file_range is not available:
// fsync alone makes the data durable.
func startWriteback(*os.File) {}
