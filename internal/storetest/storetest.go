// Package storetest holds what tests of a store need: Memory, an in-memory
// fake with the semantics of store.FS, and Run and RunReader, the behaviour
// table every implementation passes (store's tests run it against FS, the
// read-only Dir and S3; this package's against Memory).
package storetest // import "github.com/agentaudit/agentaudit/internal/storetest"

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/store"
)

// Run runs the behaviour table of a store.Store, its read side included,
// against stores open returns, each new and empty.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	RunReader(t, func(t *testing.T) (store.Store, store.Reader) {
		s := open(t)
		return s, s
	})
	for _, tc := range []struct {
		name string
		test func(t *testing.T, s store.Store)
	}{
		{"EmptyObject", emptyObject},
		{"IdempotentPut", idempotentPut},
		{"Conflict", conflict},
		{"PutKeepsACopy", putKeepsACopy},
		{"InvalidKeys", invalidKeys},
		{"CanceledPut", canceledPut},
		{"ConcurrentPuts", concurrentPuts},
		{"ConcurrentConflict", concurrentConflict},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, open(t)) })
	}
}

// RunReader runs the behaviour table of a store.Reader: open returns a new,
// empty store and a Reader of the same objects (the store itself, or a
// read-only view of the same place).
func RunReader(t *testing.T, open func(t *testing.T) (store.Store, store.Reader)) {
	t.Helper()
	for _, tc := range []struct {
		name string
		test func(t *testing.T, w store.Store, r store.Reader)
	}{
		{"PutGetList", putGetList},
		{"Batches", batches},
		{"NotFound", notFound},
		{"GetReturnsACopy", getReturnsACopy},
		{"InvalidNames", invalidNames},
		{"CanceledRead", canceledRead},
		{"String", func(t *testing.T, _ store.Store, r store.Reader) { assert.NotEmpty(t, r.String()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, r := open(t)
			tc.test(t, w, r)
		})
	}
}

var ctx = context.Background()

func putGetList(t *testing.T, w store.Store, r store.Reader) {
	keys := []string{
		"dt=2026-11-27/b-00000000000000000010.parquet",
		"dt=2026-11-27/a-00000000000000000000.parquet",
		"dt=2026-11-26/a-00000000000000000000.parquet",
		"top.bin",
	}
	for i, k := range keys {
		require.NoError(t, w.Put(ctx, k, []byte(fmt.Sprintf("object %d", i))))
	}
	for i, k := range keys {
		got, err := r.Get(ctx, k)
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("object %d", i), string(got))
	}

	all, err := r.List(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, []string{
		"dt=2026-11-26/a-00000000000000000000.parquet",
		"dt=2026-11-27/a-00000000000000000000.parquet",
		"dt=2026-11-27/b-00000000000000000010.parquet",
		"top.bin",
	}, all)

	day, err := r.List(ctx, "dt=2026-11-27/")
	require.NoError(t, err)
	assert.Equal(t, []string{
		"dt=2026-11-27/a-00000000000000000000.parquet",
		"dt=2026-11-27/b-00000000000000000010.parquet",
	}, day)

	partial, err := r.List(ctx, "dt=2026-11-27/b")
	require.NoError(t, err)
	assert.Equal(t, []string{"dt=2026-11-27/b-00000000000000000010.parquet"}, partial)

	dts, err := r.List(ctx, "dt=")
	require.NoError(t, err)
	assert.Len(t, dts, 3)

	none, err := r.List(ctx, "dt=2030-01-01/")
	require.NoError(t, err)
	assert.Empty(t, none)

	// Empty objects read back empty.
	require.NoError(t, w.Put(ctx, "empty", nil))
	got, err := r.Get(ctx, "empty")
	require.NoError(t, err)
	assert.Empty(t, got)
}

// batches: every *.parquet name, and nothing else, in key order; the
// checkpoints and keys beside the trail are found with List.
func batches(t *testing.T, w store.Store, r store.Reader) {
	got, err := r.Batches(ctx)
	require.NoError(t, err)
	assert.Empty(t, got, "an empty store")

	day := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	b0, b1 := store.BatchKey("c-1", 0, day), store.BatchKey("c-1", 10, day)
	other := "elsewhere/not-a-batch-name.parquet"
	cp := store.CheckpointKey("c-1", 10)
	vk := store.VerifierKeyKey("c-1", "agentaudit-c-1+0a1b2c3d+AAAA")
	for _, k := range []string{b1, cp, other, vk, b0, "notes.txt"} {
		require.NoError(t, w.Put(ctx, k, []byte(k)))
	}
	got, err = r.Batches(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{b0, b1, other}, got)

	cps, err := r.List(ctx, store.CheckpointsPrefix)
	require.NoError(t, err)
	assert.Equal(t, []string{cp}, cps)
	vks, err := r.List(ctx, store.KeysPrefix)
	require.NoError(t, err)
	assert.Equal(t, []string{vk}, vks)
}

func notFound(t *testing.T, _ store.Store, r store.Reader) {
	_, err := r.Get(ctx, "dt=2026-11-27/missing.parquet")
	require.ErrorIs(t, err, store.ErrNotFound)
	assert.Contains(t, err.Error(), "missing.parquet")
}

func getReturnsACopy(t *testing.T, w store.Store, r store.Reader) {
	require.NoError(t, w.Put(ctx, "k", []byte("abc")))
	got, err := r.Get(ctx, "k")
	require.NoError(t, err)
	got[1] = 'Y'
	again, err := r.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "abc", string(again), "Get returns a copy")
}

// unsafeNames leave the store or are not names: refused by Put and Get.
var unsafeNames = []string{
	"", "/abs/key", "../escape", "a/../../b", "a/..", "..", ".", "./a", "a/./b", "nul\x00byte",
	strings.Repeat("k", 1025),
}

// notKeys can be read (other tools write such names, a reader of the trail
// reads them) but are never written.
var notKeys = []string{`a\b`, `..\..\x`, "a//b", "a/", "trailing/", ".hidden", "dir/.tmp-file"}

// badPrefixes are refused by List.
var badPrefixes = []string{"/", "/abs", "../", "..", "a/../", `a\`, ".hidden/", "a//"}

func invalidNames(t *testing.T, _ store.Store, r store.Reader) {
	for _, k := range unsafeNames {
		_, err := r.Get(ctx, k)
		assert.ErrorIs(t, err, store.ErrInvalidKey, "get %q", k)
	}
	for _, k := range notKeys {
		_, err := r.Get(ctx, k)
		assert.ErrorIs(t, err, store.ErrNotFound, "get %q", k)
	}
	for _, p := range badPrefixes {
		_, err := r.List(ctx, p)
		assert.ErrorIs(t, err, store.ErrInvalidKey, "list %q", p)
	}
}

func canceledRead(t *testing.T, w store.Store, r store.Reader) {
	require.NoError(t, w.Put(ctx, "k.parquet", []byte("x")))
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := r.Get(cctx, "k.parquet")
	assert.ErrorIs(t, err, context.Canceled)
	_, err = r.List(cctx, "")
	assert.ErrorIs(t, err, context.Canceled)
	_, err = r.Batches(cctx)
	assert.ErrorIs(t, err, context.Canceled)
}

func emptyObject(t *testing.T, s store.Store) {
	require.NoError(t, s.Put(ctx, "empty", nil))
	require.NoError(t, s.Put(ctx, "empty", []byte{}))
	assert.ErrorIs(t, s.Put(ctx, "empty", []byte{0}), store.ErrConflict)
}

func idempotentPut(t *testing.T, s store.Store) {
	k := store.BatchKey("c", 0, time.Now())
	require.NoError(t, s.Put(ctx, k, []byte("batch")))
	require.NoError(t, s.Put(ctx, k, []byte("batch")), "a retried upload is not an error")
	got, err := s.Get(ctx, k)
	require.NoError(t, err)
	assert.Equal(t, "batch", string(got))
	keys, err := s.List(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, []string{k}, keys)
}

func conflict(t *testing.T, s store.Store) {
	k := store.BatchKey("c", 0, time.Now())
	require.NoError(t, s.Put(ctx, k, []byte("first writer")))
	err := s.Put(ctx, k, []byte("second writer"))
	require.ErrorIs(t, err, store.ErrConflict)
	assert.Contains(t, err.Error(), k)
	err = s.Put(ctx, k, []byte("first writer, longer"))
	require.ErrorIs(t, err, store.ErrConflict)
	got, err := s.Get(ctx, k)
	require.NoError(t, err)
	assert.Equal(t, "first writer", string(got), "original unchanged")
}

func putKeepsACopy(t *testing.T, s store.Store) {
	data := []byte("abc")
	require.NoError(t, s.Put(ctx, "k", data))
	data[0] = 'X'
	got, err := s.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "abc", string(got), "Put keeps its own copy")
}

func invalidKeys(t *testing.T, s store.Store) {
	for _, k := range append(append([]string{}, unsafeNames...), notKeys...) {
		assert.ErrorIs(t, s.Put(ctx, k, []byte("x")), store.ErrInvalidKey, "put %q", k)
	}
	keys, err := s.List(ctx, "")
	require.NoError(t, err)
	assert.Empty(t, keys, "nothing stored by rejected puts")
	batches, err := s.Batches(ctx)
	require.NoError(t, err)
	assert.Empty(t, batches, "nothing stored by rejected puts")
}

func canceledPut(t *testing.T, s store.Store) {
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	assert.ErrorIs(t, s.Put(cctx, "k", []byte("x")), context.Canceled)
	keys, err := s.List(ctx, "")
	require.NoError(t, err)
	assert.Empty(t, keys)
}

func concurrentPuts(t *testing.T, s store.Store) {
	const writers, each = 8, 25
	day := time.Date(2026, 11, 27, 23, 59, 0, 0, time.UTC)
	var wg sync.WaitGroup
	errs := make(chan error, writers*each*2)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				k := store.BatchKey(fmt.Sprintf("chain-%d", w), int64(i*100), day)
				errs <- s.Put(ctx, k, []byte(k))
				// Every writer also races on one shared key with equal bytes.
				shared := store.BatchKey("shared", int64(i), day)
				errs <- s.Put(ctx, shared, []byte(shared))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	keys, err := s.List(ctx, "")
	require.NoError(t, err)
	assert.Len(t, keys, writers*each+each)
	for _, k := range keys {
		got, err := s.Get(ctx, k)
		require.NoError(t, err)
		assert.Equal(t, k, string(got))
	}
}

func concurrentConflict(t *testing.T, s store.Store) {
	const writers = 8
	var wg sync.WaitGroup
	results := make([]error, writers)
	for w := range writers {
		wg.Go(func() { results[w] = s.Put(ctx, "k", []byte(fmt.Sprintf("writer %d", w))) })
	}
	wg.Wait()
	winners := 0
	for _, err := range results {
		if err == nil {
			winners++
		} else {
			assert.ErrorIs(t, err, store.ErrConflict)
		}
	}
	assert.Equal(t, 1, winners, "exactly one writer wins")
	got, err := s.Get(ctx, "k")
	require.NoError(t, err)
	assert.Contains(t, string(got), "writer ")
}
