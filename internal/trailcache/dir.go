package trailcache

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"syscall"

	"github.com/agentaudit/agentaudit/internal/store"
)

// dirSource is a trail in a local directory.
type dirSource string

// list keeps the regular files of what store.Dir's Batches lists: a
// symbolic link, a named pipe or a directory named *.parquet is not part of
// a trail.
func (d dirSource) list(ctx context.Context) ([]object, error) {
	keys, err := store.Dir(d).Batches(ctx)
	if err != nil {
		return nil, fmt.Errorf("trailcache: %w", err)
	}
	root, err := os.OpenRoot(string(d))
	if err != nil {
		return nil, fmt.Errorf("trailcache: %w", err)
	}
	defer root.Close()
	// Each directory opened once: a name in it is then one fstatat, not
	// an open of every directory on its path.
	dirs := map[string]*os.Root{}
	defer func() {
		for _, r := range dirs {
			r.Close()
		}
	}()
	var objs []object
	for _, k := range keys {
		dir, name := path.Split(k)
		r := root
		if dir != "" {
			if r = dirs[dir]; r == nil {
				if r, err = root.OpenRoot(filepath.FromSlash(dir)); err != nil {
					return nil, fmt.Errorf("trailcache: %w", err)
				}
				dirs[dir] = r
			}
		}
		fi, err := r.Lstat(name)
		if err != nil {
			return nil, fmt.Errorf("trailcache: %w", err)
		}
		if fi.Mode().IsRegular() {
			objs = append(objs, object{key: k, size: fi.Size(), mtime: fi.ModTime().UnixNano()})
		}
	}
	return objs, nil
}

// fetcher opens the file at the first fetch and keeps it open until done.
func (d dirSource) fetcher(ctx context.Context, o object) (func(off, n int64) ([]byte, error), func()) {
	var f *os.File
	fetch := func(off, n int64) ([]byte, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if f == nil {
			var err error
			if f, err = d.open(o.key); err != nil {
				return nil, err
			}
		}
		b := make([]byte, n)
		if _, err := f.ReadAt(b, off); err != nil {
			return nil, fmt.Errorf("trailcache: reading %s: %w", f.Name(), err)
		}
		return b, nil
	}
	done := func() {
		if f != nil {
			f.Close()
		}
	}
	return fetch, done
}

// open opens the regular file under key without following a symbolic link
// or blocking on a named pipe that took its place since the listing.
func (d dirSource) open(key string) (*os.File, error) {
	root, err := os.OpenRoot(string(d))
	if err != nil {
		return nil, fmt.Errorf("trailcache: %w", err)
	}
	defer root.Close()
	name := filepath.FromSlash(key)
	fi, err := root.Lstat(name)
	if err != nil {
		return nil, fmt.Errorf("trailcache: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("trailcache: %s/%s is no longer a regular file", d, key)
	}
	// O_NONBLOCK: if a pipe took the file's place since Lstat, open
	// returns at once instead of waiting for a writer.
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("trailcache: %w", err)
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("trailcache: %s/%s is no longer a regular file", d, key)
	}
	return f, nil
}

func (dirSource) remote() bool { return false }
func (d dirSource) local(_ context.Context, o object) (string, bool, int64, error) {
	return filepath.Join(string(d), filepath.FromSlash(o.key)), false, 0, nil
}
