package storetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/agentaudit/agentaudit/internal/store"
)

// Memory is an in-memory store.Store for tests, with the semantics of
// store.FS: the same key validation, write-once objects, ErrConflict and
// ErrNotFound. It copies bytes in and out, and is safe for concurrent use.
// One difference: FS cannot hold both "a" and "a/b" (a file is not a
// directory); Memory can.
type Memory struct {
	mu      sync.RWMutex
	objects map[string][]byte
}

var _ store.Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{objects: make(map[string][]byte)}
}

// Put stores a copy of data under key once; see store.Store.
func (m *Memory) Put(ctx context.Context, key string, data []byte) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if have, ok := m.objects[key]; ok {
		if !bytes.Equal(have, data) {
			return fmt.Errorf("store: put %s: %w: holds %d different bytes (put of %d bytes)", key, store.ErrConflict, len(have), len(data))
		}
		return nil
	}
	m.objects[key] = bytes.Clone(data)
	return nil
}

// Get returns a copy of the object's bytes, or an error wrapping
// store.ErrNotFound.
func (m *Memory) Get(ctx context.Context, key string) ([]byte, error) {
	if err := store.ValidName(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	data, ok := m.objects[key]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s", store.ErrNotFound, key)
	}
	return bytes.Clone(data), nil
}

// List returns every key under prefix ("" for all), sorted.
func (m *Memory) List(ctx context.Context, prefix string) ([]string, error) {
	if err := store.ValidPrefix(prefix); err != nil {
		return nil, err
	}
	return m.keys(ctx, func(k string) bool { return strings.HasPrefix(k, prefix) })
}

// Batches returns every key a reader's glob reads as a batch, sorted.
func (m *Memory) Batches(ctx context.Context) ([]string, error) {
	return m.keys(ctx, store.IsBatchKey)
}

func (m *Memory) keys(ctx context.Context, keep func(string) bool) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	var keys []string
	for k := range m.objects {
		if keep(k) {
			keys = append(keys, k)
		}
	}
	m.mu.RUnlock()
	slices.Sort(keys)
	return keys, nil
}

// String names the fake in reports.
func (m *Memory) String() string { return "memory" }
