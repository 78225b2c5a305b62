package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/agentaudit/agentaudit/internal/atomicfile"
)

// Modes of what FS creates. Objects are read-only from birth: sealed
// batches are never rewritten in place.
const (
	dirMode    fs.FileMode = 0o750
	objectMode fs.FileMode = 0o444
)

// FS is a Store on a local directory. Object keys are paths below the
// directory; it reads them as Dir does. It is safe for concurrent use,
// including by several processes sharing the directory.
type FS struct {
	dir string
}

var (
	_ Store    = (*FS)(nil)
	_ PutAller = (*FS)(nil)
)

// NewFS returns a store rooted at dir, creating it (mode 0750) if missing.
// It returns an error naming the path when dir is not a writable directory.
func NewFS(dir string) (*FS, error) {
	if dir == "" {
		return nil, errors.New("store: empty directory path")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("store: directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, dirMode); err != nil {
		return nil, fmt.Errorf("store: create directory %s: %w", abs, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("store: directory %s: %w", abs, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("store: %s is not a directory", abs)
	}
	probe, err := os.CreateTemp(abs, ".agentaudit-probe-*")
	if err != nil {
		return nil, fmt.Errorf("store: directory %s is not writable: %w", abs, err)
	}
	name := probe.Name()
	probe.Close()
	if err := os.Remove(name); err != nil {
		return nil, fmt.Errorf("store: directory %s: remove probe: %w", abs, err)
	}
	return &FS{dir: abs}, nil
}

// Dir returns the absolute path of the store's root directory.
func (s *FS) Dir() string { return s.dir }

func (s *FS) path(key string) string { return filepath.Join(s.dir, filepath.FromSlash(key)) }

// Put writes data to a temporary dot-file next to the final path (named
// ".<name>.tmp-<random>": no "**/*.parquet" glob matches it, nor List), makes it read-only, fsyncs it, and
// hard-links it to the final name, which fails instead of replacing an
// existing file. It then removes the temporary name and fsyncs the
// directory, and the parents of any directory it created. When the final
// name exists it compares bytes: identical is success, different is
// ErrConflict. No temporary file survives an error.
func (s *FS) Put(ctx context.Context, key string, data []byte) error {
	return s.PutAll(ctx, []Object{{Key: key, Data: data}})
}

// PutAll is Put of each object, in fewer steps than a Put each: the
// temporary files are all written before any is fsynced, with their
// writeback started (on Linux) so that the fsyncs that follow find their
// data on its way together (on ext4 the first of them commits the journal
// for all); each directory is fsynced once, after the last link into it.
// A durable file each is most of what a chain's tree costs the collector
// (about 40 tiles per 10,000 entries). On success every object is durable
// under its key; on an error, any of them may be stored (each whole or not
// at all, as a Put leaves it), and calling PutAll again is safe. No
// temporary file survives.
func (s *FS) PutAll(ctx context.Context, objs []Object) error {
	puts := make([]put, len(objs))
	defer func() {
		// The temporary names go on every path; after a link the object
		// lives on under its final name. A failed removal after a
		// successful link leaves a dot-file readers never see: not worth
		// failing the put.
		for _, p := range puts {
			if p.f != nil {
				p.f.Close()
			}
			if p.tmp != "" {
				_ = os.Remove(p.tmp)
			}
		}
	}()
	for _, o := range objs {
		if err := ValidKey(o.Key); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var dirs []string // each once, in order of first use
	for i, o := range objs {
		puts[i] = put{Object: o, final: s.path(o.Key)}
		if dir := filepath.Dir(puts[i].final); !slices.Contains(dirs, dir) {
			if err := s.mkdirs(dir); err != nil {
				return fmt.Errorf("store: put %s: %w", o.Key, err)
			}
			dirs = append(dirs, dir)
		}
	}
	many := len(puts) > 1
	// One at a time: files created in one directory in parallel contend
	// for it in the kernel, which spins (BenchmarkPutTiles: 1.3-1.5x the
	// CPU, the same wall time).
	for i := range puts {
		if err := puts[i].write(many); err != nil {
			return err
		}
	}
	if err := parallel(len(puts), func(i int) error { return puts[i].sync() }); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := range puts {
		p := &puts[i]
		err := os.Link(p.tmp, p.final)
		_ = os.Remove(p.tmp)
		p.tmp = ""
		if errors.Is(err, fs.ErrExist) {
			err = s.compare(p.final, p.Data)
		}
		if err != nil {
			return fmt.Errorf("store: put %s: %w", p.Key, err)
		}
	}
	// Also after an identical object was found: its writer may not have
	// synced the directory yet, and our caller is told the bytes are durable.
	for _, dir := range dirs {
		if err := syncDir(dir); err != nil {
			return fmt.Errorf("store: put %s: %w", puts[0].Key, err)
		}
	}
	return nil
}

// put is an object on its way to its final name through a temporary file.
type put struct {
	Object
	final, tmp string
	f          *os.File // open until synced
}

// write writes the object to a new temporary file next to its final name
// and makes it read-only; with writeback, starts writing it to disk.
func (p *put) write(writeback bool) error {
	dir, name := filepath.Split(p.final)
	f, err := os.CreateTemp(dir, "."+name+tmpInfix+"*")
	if err != nil {
		return fmt.Errorf("store: put %s: %w", p.Key, err)
	}
	p.f, p.tmp = f, f.Name()
	if _, err := f.Write(p.Data); err != nil {
		return fmt.Errorf("store: put %s: %w", p.Key, err)
	}
	if err := f.Chmod(objectMode); err != nil {
		return fmt.Errorf("store: put %s: %w", p.Key, err)
	}
	if writeback {
		startWriteback(f)
	}
	return nil
}

// sync flushes the temporary file to stable storage and closes it.
func (p *put) sync() error {
	err := p.f.Sync()
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	p.f = nil
	if err != nil {
		return fmt.Errorf("store: put %s: %w", p.Key, err)
	}
	return nil
}

// maxParallel is how many files PutAll fsyncs at a time: a disk's queue
// overlaps them, where one at a time each waits for the one before.
const maxParallel = 8

// parallel calls fn(i) for i in [0, n), up to maxParallel at a time, and
// returns the first error; after one, no further call starts.
func parallel(n int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		first atomic.Pointer[error]
	)
	for range min(n, maxParallel) {
		wg.Go(func() {
			for first.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	wg.Wait()
	if err := first.Load(); err != nil {
		return *err
	}
	return nil
}

// tmpInfix separates an object's name from the random part of the name of
// its temporary file: ".<name>.tmp-<random>".
const tmpInfix = ".tmp-"

// RemoveTemporary removes the temporary files that Puts interrupted by a
// crash left behind, for the objects whose keys mine accepts, and returns
// how many it removed. Readers never see them, but they take space. Call
// it before any Put of those keys: a Put in flight holds its temporary
// file, and the directory may be shared with other writers, whose keys
// mine must refuse.
func (s *FS) RemoveTemporary(mine func(key string) bool) (int, error) {
	removed := 0
	err := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name, ok := strings.CutPrefix(d.Name(), ".")
		i := strings.LastIndex(name, tmpInfix)
		if !ok || i <= 0 {
			return nil
		}
		rel, err := filepath.Rel(s.dir, filepath.Join(filepath.Dir(p), name[:i]))
		if err != nil || !mine(filepath.ToSlash(rel)) {
			return err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		removed++
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("store: removing temporary files under %s: %w", s.dir, err)
	}
	return removed, nil
}

// compare resolves a Put onto an existing object: nil when it holds data,
// else an error wrapping ErrConflict.
func (s *FS) compare(final string, data []byte) error {
	have, err := os.ReadFile(final)
	if err != nil {
		return fmt.Errorf("read existing object: %w", err)
	}
	if !bytes.Equal(have, data) {
		return fmt.Errorf("%w: %s holds %d different bytes (put of %d bytes)", ErrConflict, final, len(have), len(data))
	}
	return nil
}

// mkdirs creates dir and any missing parents below the store root, and
// fsyncs the parent of each directory it created (or raced to create), so
// that the new entries survive a crash.
func (s *FS) mkdirs(dir string) error {
	var missing []string
	for d := dir; d != s.dir; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
	}
	for _, d := range slices.Backward(missing) {
		if err := os.Mkdir(d, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		// Also on ErrExist: the racing creator may not have synced yet.
		if err := syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// syncDir flushes a directory's entries to stable storage.
func syncDir(dir string) error {
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Get reads the regular file under key; see Dir.Get.
func (s *FS) Get(ctx context.Context, key string) ([]byte, error) {
	return Dir(s.dir).Get(ctx, key)
}

// List returns the keys of the regular files under prefix; see Dir.List.
func (s *FS) List(ctx context.Context, prefix string) ([]string, error) {
	return Dir(s.dir).List(ctx, prefix)
}

// Batches lists what a reader's glob reads as batches; see Dir.Batches.
func (s *FS) Batches(ctx context.Context) ([]string, error) {
	return Dir(s.dir).Batches(ctx)
}

// String is the directory's path.
func (s *FS) String() string { return s.dir }

// Delete removes the object under key and fsyncs its directory. It is for
// spools, whose objects leave once a remote store has them; a trail's own
// store never deletes. Deleting a missing key is not an error.
func (s *FS) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := s.path(key)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	return nil
}
