// Package store holds a trail's objects and owns their key layout
// (layout.go): the one place that builds and parses batch, checkpoint and
// verifier key names.
//
// A Store writes objects exactly once: once a key holds bytes, a second
// Put with the same bytes is a no-op (a retried upload) and a Put with
// different bytes is a conflict, which means two writers share a chain id.
// Its read side, Reader, is what an auditor's tools need: a read-only
// directory (Dir) is one, and every Store is one. Implementations: FS (a
// local directory), Dir (read-only) and S3; an in-memory fake for tests is
// in internal/storetest, with the behaviour table every implementation
// passes.
package store // import "github.com/agentaudit/agentaudit/internal/store"

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Reader reads a trail. Keys are slash-separated relative paths.
type Reader interface {
	// Get returns the bytes of the object under key: any key List or
	// Batches returns, dot-named ones included. A missing object gives an
	// error wrapping ErrNotFound; a name that is not a relative path
	// inside the store (see ValidName), one wrapping ErrInvalidKey.
	Get(ctx context.Context, key string) ([]byte, error)
	// List returns every key under prefix ("" for all, else a key or
	// part of one; see ValidKey), sorted. Names that are not keys
	// (dot-files: temporary files) are left out.
	List(ctx context.Context, prefix string) ([]string, error)
	// Batches returns every name a reader of the trail reads as a batch
	// file (read_parquet('<root>/**/*.parquet'), see IsBatchKey), sorted:
	// also names agentaudit never writes (".x.parquet"), and in a
	// directory names that are not regular files, which Get refuses with
	// a *NotRegularError. Nothing a reader sees may be skipped silently.
	Batches(ctx context.Context) ([]string, error)
	// String names the store for reports: a path or s3://bucket/prefix.
	String() string
}

// Store is a Reader that also writes objects, each exactly once.
type Store interface {
	Reader
	// Put stores data under key (see ValidKey) exactly once. If key
	// already holds identical bytes, Put returns nil (a retried upload is
	// idempotent). If it holds different bytes, Put returns an error
	// wrapping ErrConflict (two writers share a chain id) and changes
	// nothing.
	Put(ctx context.Context, key string, data []byte) error
}

// Object is a key and the bytes to store under it.
type Object struct {
	Key  string
	Data []byte
}

// PutAller is a Store that stores several objects in one call for less
// than a Put each (FS). PutAll is Put of each object; on an error, any of
// them may be stored, and calling it again is safe.
type PutAller interface {
	PutAll(ctx context.Context, objs []Object) error
}

// PutAll stores objs in st: in one call where st is a PutAller, else with
// a Put each, in order.
func PutAll(ctx context.Context, st Store, objs []Object) error {
	if pa, ok := st.(PutAller); ok {
		return pa.PutAll(ctx, objs)
	}
	for _, o := range objs {
		if err := st.Put(ctx, o.Key, o.Data); err != nil {
			return err
		}
	}
	return nil
}

// Errors. Check with errors.Is; they come back wrapped with the key or path.
var (
	// ErrConflict: the key already holds different bytes. Retrying cannot
	// fix it: two writers share a chain id.
	ErrConflict = errors.New("store: object exists with different content")
	// ErrNotFound: no object under the key.
	ErrNotFound = errors.New("store: object not found")
	// ErrInvalidKey: the key (or List prefix) is not a clean relative path.
	ErrInvalidKey = errors.New("store: invalid key")
)

// maxKeyLen bounds keys well below common filesystem and object store limits.
const maxKeyLen = 1024

// ValidKey returns nil if key is usable as an object key: a non-empty,
// slash-separated relative path of at most 1024 bytes whose segments are
// non-empty and do not start with '.' (which excludes "." and ".." and keeps
// the namespace of temporary files apart), without backslashes or NUL bytes.
// Otherwise it returns an error wrapping ErrInvalidKey.
func ValidKey(key string) error {
	if err := ValidName(key); err != nil {
		return err
	}
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why) }
	if strings.ContainsRune(key, '\\') {
		return bad("contains a backslash")
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch {
		case seg == "":
			return bad("empty path segment")
		case seg[0] == '.':
			return bad("segment starts with '.'")
		}
	}
	return nil
}

// ValidName returns nil if name can be read from a store: what ValidKey
// checks, except that segments may start with '.' and be empty, and may
// hold a backslash (an S3 bucket and a directory written by other tools
// hold such names, and a reader of the trail reads them). It still refuses
// "", absolute paths, "." and ".." segments and NUL bytes, so that no name
// leaves the store. Otherwise it returns an error wrapping ErrInvalidKey.
func ValidName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, name, why) }
	switch {
	case name == "":
		return bad("empty")
	case len(name) > maxKeyLen:
		return bad("longer than " + strconv.Itoa(maxKeyLen) + " bytes")
	case strings.HasPrefix(name, "/"):
		return bad("absolute path")
	case strings.ContainsRune(name, 0):
		return bad("contains a NUL byte")
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "." || seg == ".." {
			return bad("contains a " + strconv.Quote(seg) + " segment")
		}
	}
	return nil
}

// ValidPrefix returns nil if prefix is usable with List: "" or a key,
// optionally ending in '/'. Otherwise it returns an error wrapping
// ErrInvalidKey.
func ValidPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := ValidKey(strings.TrimSuffix(prefix, "/")); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	return nil
}
