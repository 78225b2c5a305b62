package verify

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

	"github.com/agentaudit/agentaudit/internal/store"
)

// Source is where a trail's files are read from.
type Source interface {
	// List returns the keys of every .parquet file, slash-separated and
	// relative to the source's root, sorted. Other files are not part of a
	// trail and are left out. A Dir also lists what a reader's glob could
	// read that is not a regular file (see Dir.List).
	List(ctx context.Context) ([]string, error)
	// ListUnder returns the keys of every file under prefix (a directory
	// such as "checkpoints/"), sorted; none when there is no such
	// directory. It is how checkpoints and keys beside the trail are found.
	ListUnder(ctx context.Context, prefix string) ([]string, error)
	// ReadFile returns the bytes of the file under key.
	ReadFile(ctx context.Context, key string) ([]byte, error)
	// String names the source for reports: a path or s3://bucket/prefix.
	String() string
}

// Dir is a trail in a local directory. It only reads: unlike store.FS it
// needs no write access, which an auditor's copy may not grant.
type Dir string

// List walks the directory and returns every name a reader's glob
// (read_parquet('<dir>/**/*.parquet')) could read: each entry named
// *.parquet at any depth, dot-files and dot-directories included (DuckDB
// reads them), and each symbolic link to a directory (a glob such as
// 'dt=*/*.parquet' follows it). The walk follows no link. Names that are not
// regular files are listed too: ReadFile refuses them with an error that
// Verify reports as a NotRegularFile violation, so that nothing a reader
// sees is skipped silently.
func (d Dir) List(ctx context.Context) ([]string, error) {
	root := string(d)
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("verify: %s is not a directory", root)
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
		if !strings.HasSuffix(e.Name(), ".parquet") && (e.Type()&fs.ModeSymlink == 0 || !isDirLink(p)) {
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
		return nil, fmt.Errorf("verify: listing %s: %w", root, err)
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

// ListUnder walks the directory prefix names below d, if there is one.
func (d Dir) ListUnder(ctx context.Context, prefix string) ([]string, error) {
	sub := filepath.Join(string(d), filepath.FromSlash(strings.TrimSuffix(prefix, "/")))
	return d.walk(ctx, sub)
}

// walk returns the keys of the regular files below sub, sorted, skipping
// dot-files and dot-directories (temporary files); none when sub does not
// exist.
func (d Dir) walk(ctx context.Context, sub string) ([]string, error) {
	root := string(d)
	var keys []string
	err := filepath.WalkDir(sub, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == sub && errors.Is(err, fs.ErrNotExist) {
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
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		keys = append(keys, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify: listing %s: %w", sub, err)
	}
	slices.Sort(keys)
	return keys, nil
}

// notRegularError: a listed name that is not a regular file of the trail.
// Verify reports it as a NotRegularFile violation.
type notRegularError struct {
	key  string
	what string // e.g. "symlink to /tmp/x.parquet"
}

func (e *notRegularError) Error() string {
	return "verify: " + e.key + " is not a regular file: " + e.what
}

// open opens the regular file under key for reading. It never follows a
// symbolic link and never blocks on a named pipe: anything but a regular
// file is a *notRegularError. The os.Root keeps every open inside the
// directory, even if the tree changes meanwhile.
func (d Dir) open(key string) (*os.File, int64, error) {
	root, err := os.OpenRoot(string(d))
	if err != nil {
		return nil, 0, fmt.Errorf("verify: %w", err)
	}
	defer root.Close()
	name := filepath.FromSlash(key)
	fi, err := root.Lstat(name)
	if err != nil {
		return nil, 0, fmt.Errorf("verify: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, &notRegularError{key: key, what: describe(filepath.Join(string(d), name), fi.Mode())}
	}
	// O_NONBLOCK: if a pipe took the file's place since Lstat, open
	// returns at once instead of waiting for a writer.
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("verify: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("verify: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, &notRegularError{key: key, what: describe(filepath.Join(string(d), name), st.Mode())}
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

// ReadFile reads one regular file; see open.
func (d Dir) ReadFile(_ context.Context, key string) ([]byte, error) {
	return d.readFileInto(key, nil)
}

// readFileInto reads one regular file into buf, reusing it when large
// enough; see open.
func (d Dir) readFileInto(key string, buf []byte) ([]byte, error) {
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
		return nil, fmt.Errorf("verify: reading %s: %w", f.Name(), err)
	}
	return buf, nil
}

func (d Dir) String() string { return string(d) }

// S3 is a trail under an S3 prefix.
type S3 struct {
	store *store.S3
	url   string
}

// NewS3 returns the trail under s3://opts.Bucket/opts.Prefix. Credentials
// come from the AWS SDK's default chain. It makes no request.
func NewS3(ctx context.Context, opts store.S3Options) (*S3, error) {
	st, err := store.NewS3(ctx, opts)
	if err != nil {
		return nil, err
	}
	url := "s3://" + opts.Bucket
	if p := strings.Trim(opts.Prefix, "/"); p != "" {
		url += "/" + p
	}
	return &S3{store: st, url: url}, nil
}

// ParseS3URL splits "s3://bucket/prefix" into bucket and prefix.
func ParseS3URL(u string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(u, "s3://")
	if !ok {
		return "", "", fmt.Errorf("verify: %q is not an s3:// URL", u)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("verify: %q names no bucket", u)
	}
	return bucket, strings.Trim(prefix, "/"), nil
}

// List lists the .parquet objects under the prefix, also those whose
// names agentaudit never writes (".x.parquet"), which a reader may read.
func (s *S3) List(ctx context.Context) ([]string, error) {
	keys, err := s.store.ListAll(ctx, "")
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(keys, func(k string) bool { return !strings.HasSuffix(k, ".parquet") }), nil
}

// ListUnder lists the objects under prefix.
func (s *S3) ListUnder(ctx context.Context, prefix string) ([]string, error) {
	return s.store.List(ctx, prefix)
}

// ReadFile downloads one object.
func (s *S3) ReadFile(ctx context.Context, key string) ([]byte, error) {
	b, err := s.store.GetAny(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("verify: %s/%s was listed but is gone: %w", s.url, key, err)
	}
	return b, err
}

func (s *S3) String() string { return s.url }
