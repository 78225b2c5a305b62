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

	"github.com/agentaudit/agentaudit/internal/store"
)

// Source is where a trail's files are read from.
type Source interface {
	// List returns the keys of every .parquet file, slash-separated and
	// relative to the source's root, sorted. Other files are not part of a
	// trail and are left out.
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

// List walks the directory, skipping dot-files and dot-directories (the
// store's temporary files), and returns the .parquet files.
func (d Dir) List(ctx context.Context) ([]string, error) {
	st, err := os.Stat(string(d))
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("verify: %s is not a directory", string(d))
	}
	return d.walk(ctx, string(d), func(name string) bool { return strings.HasSuffix(name, ".parquet") })
}

// ListUnder walks the directory prefix names below d, if there is one.
func (d Dir) ListUnder(ctx context.Context, prefix string) ([]string, error) {
	sub := filepath.Join(string(d), filepath.FromSlash(strings.TrimSuffix(prefix, "/")))
	return d.walk(ctx, sub, func(string) bool { return true })
}

// walk returns the keys of the regular files below sub whose names keep
// accepts, sorted, skipping dot-files and dot-directories; none when sub
// does not exist.
func (d Dir) walk(ctx context.Context, sub string, keep func(name string) bool) ([]string, error) {
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
		if !e.Type().IsRegular() || !keep(e.Name()) {
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

// ReadFile reads one file.
func (d Dir) ReadFile(_ context.Context, key string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(string(d), filepath.FromSlash(key)))
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return b, nil
}

// readFileInto reads one file into buf, reusing it when large enough.
func (d Dir) readFileInto(key string, buf []byte) ([]byte, error) {
	f, err := os.Open(filepath.Join(string(d), filepath.FromSlash(key)))
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	size := int(st.Size())
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

// List lists the .parquet objects under the prefix.
func (s *S3) List(ctx context.Context) ([]string, error) {
	keys, err := s.store.List(ctx, "")
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
	b, err := s.store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("verify: %s/%s was listed but is gone: %w", s.url, key, err)
	}
	return b, err
}

func (s *S3) String() string { return s.url }
