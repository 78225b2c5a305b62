package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Dir is a trail in a local directory, read only: unlike FS it needs no
// write access, which an auditor's copy may not grant. It never follows a
// symbolic link and never blocks on a named pipe.
type Dir string

var _ Reader = Dir("")

// NotRegularError is what Get returns for a name that is not a regular
// file of the trail (Batches lists such names: a reader's glob matches
// them). Check with errors.As.
type NotRegularError struct {
	Key string
	// What says what it is, e.g. "symlink to /tmp/x.parquet".
	What string
}

func (e *NotRegularError) Error() string {
	return "store: " + e.Key + " is not a regular file: " + e.What
}

// Batches walks the directory and returns every name a reader's glob
// (read_parquet('<dir>/**/*.parquet')) could read: each entry named
// *.parquet at any depth, dot-files and dot-directories included (DuckDB
// reads them), and each symbolic link to a directory (a glob such as
// 'dt=*/*.parquet' follows it). The walk follows no link. Names that are not
// regular files are listed too: Get refuses them with a *NotRegularError,
// which a verifier reports, so that nothing a reader sees is skipped
// silently. A missing directory is an error.
func (d Dir) Batches(ctx context.Context) ([]string, error) {
	root := string(d)
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("store: %s is not a directory", root)
	}
	var keys []string
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		if !IsBatchKey(e.Name()) && (e.Type()&fs.ModeSymlink == 0 || !isDirLink(p)) {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		keys = append(keys, filepath.ToSlash(rel))
		return nil // a directory named *.parquet is listed and walked
	})
	if err != nil {
		return nil, fmt.Errorf("store: listing %s: %w", root, err)
	}
	slices.Sort(keys)
	return keys, nil
}

// isDirLink reports whether the symbolic link p resolves to a directory. It
// stats the target, which opens nothing.
func isDirLink(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// List returns the keys of the regular files under prefix, sorted,
// skipping dot-files and dot-directories (temporary files) and following
// no link; none when the directory the prefix names does not exist. It
// walks only that directory, not the whole tree.
func (d Dir) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ValidPrefix(prefix); err != nil {
		return nil, err
	}
	root := string(d)
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		root = d.path(prefix[:i])
	}
	var keys []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == root && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p != root && strings.HasPrefix(e.Name(), ".") {
			if e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(string(d), p)
		if err != nil {
			return err
		}
		if key := filepath.ToSlash(rel); strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list %q in %s: %w", prefix, d, err)
	}
	slices.Sort(keys)
	return keys, nil
}

func (d Dir) path(key string) string { return filepath.Join(string(d), filepath.FromSlash(key)) }

// Get reads the regular file under key (see ValidName); a missing one
// wraps ErrNotFound, anything but a regular file is a *NotRegularError.
func (d Dir) Get(ctx context.Context, key string) ([]byte, error) {
	return d.GetInto(ctx, key, nil)
}

// GetInto is Get into buf, reused when large enough: a reader of many
// files allocates once.
func (d Dir) GetInto(ctx context.Context, key string, buf []byte) ([]byte, error) {
	if err := ValidName(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, size64, err := d.open(key)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size := int(size64)
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, fmt.Errorf("store: reading %s: %w", f.Name(), err)
	}
	return buf, nil
}

// open opens the regular file under key for reading. It never follows a
// symbolic link and never blocks on a named pipe: anything but a regular
// file is a *NotRegularError. The os.Root keeps every open inside the
// directory, even if the tree changes meanwhile.
func (d Dir) open(key string) (*os.File, int64, error) {
	root, err := os.OpenRoot(string(d))
	if err != nil {
		return nil, 0, fmt.Errorf("store: %w", err)
	}
	defer root.Close()
	name := filepath.FromSlash(key)
	fi, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("%w: %s", ErrNotFound, d.path(key))
	}
	if err != nil {
		return nil, 0, fmt.Errorf("store: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, &NotRegularError{Key: key, What: describe(filepath.Join(string(d), name), fi.Mode())}
	}
	// O_NONBLOCK: if a pipe took the file's place since Lstat, open
	// returns at once instead of waiting for a writer.
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("store: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("store: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, &NotRegularError{Key: key, What: describe(filepath.Join(string(d), name), st.Mode())}
	}
	return f, st.Size(), nil
}

// describe says what p, of mode m, is. A symbolic link's target is read
// and stat'ed, not opened.
func describe(p string, m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return "symlink"
		}
		if isDirLink(p) {
			return "symlink to directory " + target
		}
		return "symlink to " + target
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "not a regular file (mode " + m.String() + ")"
}

// String is the directory's path.
func (d Dir) String() string { return string(d) }
