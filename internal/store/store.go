// Package store writes sealed batch objects exactly once and reads them back.
//
// A batch object is immutable: once a key holds bytes, a second Put with the
// same bytes is a no-op (a retried upload) and a Put with different bytes is
// a conflict, which means two writers share a chain id. The local filesystem
// implementation (FS) and an in-memory fake (Memory) share these semantics.
package store // import "github.com/agentaudit/agentaudit/internal/store"

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Store writes sealed batch objects once and reads them back. Keys are
// slash-separated relative paths (see ValidKey).
type Store interface {
	// Put stores data under key exactly once. If key already holds identical
	// bytes, Put returns nil (a retried upload is idempotent). If it holds
	// different bytes, Put returns an error wrapping ErrConflict (two
	// writers share a chain id) and changes nothing.
	Put(ctx context.Context, key string, data []byte) error
	// Get returns the object's bytes, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// List returns every key under prefix ("" for all), sorted.
	List(ctx context.Context, prefix string) ([]string, error)
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
	// ErrNotBatchKey: ParseBatchKey was given a key BatchKey does not make.
	ErrNotBatchKey = errors.New("store: not a batch key")
)

// maxKeyLen bounds keys well below common filesystem and object store limits.
const maxKeyLen = 1024

// ValidKey returns nil if key is usable as an object key: a non-empty,
// slash-separated relative path of at most 1024 bytes whose segments are
// non-empty and do not start with '.' (which excludes "." and ".." and keeps
// the namespace of temporary files apart), without backslashes or NUL bytes.
// Otherwise it returns an error wrapping ErrInvalidKey.
func ValidKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why) }
	switch {
	case key == "":
		return bad("empty")
	case len(key) > maxKeyLen:
		return bad("longer than " + strconv.Itoa(maxKeyLen) + " bytes")
	case strings.HasPrefix(key, "/"):
		return bad("absolute path")
	case strings.ContainsAny(key, "\\\x00"):
		return bad("contains a backslash or NUL byte")
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch {
		case seg == "":
			return bad("empty path segment")
		case seg == "." || seg == "..":
			return bad("contains a " + strconv.Quote(seg) + " segment")
		case seg[0] == '.':
			return bad("segment starts with '.'")
		}
	}
	return nil
}

// validPrefix checks a List prefix: "" or a key, optionally ending in '/'.
func validPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := ValidKey(strings.TrimSuffix(prefix, "/")); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	return nil
}

// maxChainIDLen bounds chain ids so that batch keys stay short.
const maxChainIDLen = 128

// ValidChainID reports whether id is usable in batch keys: 1 to 128
// characters of [A-Za-z0-9._-], not starting with '.' (which also excludes
// "." and ".."): a batch file named ".x-…" would be skipped by List and by
// some readers (Athena skips names that start with '.' or '_'), though not
// by others (DuckDB's globs read it).
func ValidChainID(id string) bool {
	if id == "" || len(id) > maxChainIDLen || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

const (
	dayPrefix  = "dt="
	dayLayout  = "2006-01-02"
	batchExt   = ".parquet"
	seqDigits  = 20 // math.MaxInt64 has 19 digits
	seqPadding = "%020d"
)

// BatchKey returns the object key of the batch of chain chainID starting at
// firstSeq: "dt=YYYY-MM-DD/<chainID>-<firstSeq as 20 zero-padded
// digits>.parquet", dt the UTC date of t. The padding keeps lexical order
// equal to seq order. chainID must satisfy ValidChainID and firstSeq must not
// be negative, or ParseBatchKey will not accept the key.
func BatchKey(chainID string, firstSeq int64, t time.Time) string {
	return dayPrefix + t.UTC().Format(dayLayout) + "/" + chainID + "-" + fmt.Sprintf(seqPadding, firstSeq) + batchExt
}

// ParseBatchKey is the inverse of BatchKey: it returns the chain id, the
// first seq and the day ("YYYY-MM-DD") of a batch key. Chain ids may contain
// '-': the seq follows the last one. Any other key gives an error wrapping
// ErrNotBatchKey.
func ParseBatchKey(key string) (chainID string, firstSeq int64, day string, err error) {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrNotBatchKey, key, why) }
	dir, name, ok := strings.Cut(key, "/")
	if !ok || !strings.HasPrefix(dir, dayPrefix) {
		return "", 0, "", bad(`want "dt=YYYY-MM-DD/<chain>-<seq>.parquet"`)
	}
	day = dir[len(dayPrefix):]
	if _, perr := time.Parse(dayLayout, day); perr != nil || len(day) != len(dayLayout) {
		return "", 0, "", bad("day " + strconv.Quote(day) + " is not YYYY-MM-DD")
	}
	base, ok := strings.CutSuffix(name, batchExt)
	if !ok {
		return "", 0, "", bad("no " + batchExt + " suffix")
	}
	dash := strings.LastIndexByte(base, '-')
	if dash < 0 {
		return "", 0, "", bad("no '-' before the seq")
	}
	chainID, digits := base[:dash], base[dash+1:]
	if !ValidChainID(chainID) {
		return "", 0, "", bad("invalid chain id " + strconv.Quote(chainID))
	}
	if len(digits) != seqDigits || strings.Trim(digits, "0123456789") != "" {
		return "", 0, "", bad("seq " + strconv.Quote(digits) + " is not 20 digits")
	}
	firstSeq, perr := strconv.ParseInt(digits, 10, 64)
	if perr != nil {
		return "", 0, "", bad("seq " + digits + " out of range")
	}
	return chainID, firstSeq, day, nil
}
