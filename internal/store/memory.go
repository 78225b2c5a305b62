package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Memory is an in-memory Store for tests, with the semantics of FS: the same
// key validation, write-once objects, ErrConflict and ErrNotFound. It copies
// bytes in and out, and is safe for concurrent use. One difference: FS
// cannot hold both "a" and "a/b" (a file is not a directory); Memory can.
type Memory struct {
	mu      sync.RWMutex
	objects map[string][]byte
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{objects: make(map[string][]byte)}
}

// Put stores a copy of data under key once; see Store.
func (m *Memory) Put(ctx context.Context, key string, data []byte) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if have, ok := m.objects[key]; ok {
		if !bytes.Equal(have, data) {
			return fmt.Errorf("store: put %s: %w: holds %d different bytes (put of %d bytes)", key, ErrConflict, len(have), len(data))
		}
		return nil
	}
	m.objects[key] = bytes.Clone(data)
	return nil
}

// Get returns a copy of the object's bytes, or an error wrapping
// ErrNotFound.
func (m *Memory) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	data, ok := m.objects[key]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return bytes.Clone(data), nil
}

// List returns every key under prefix ("" for all), sorted.
func (m *Memory) List(ctx context.Context, prefix string) ([]string, error) {
	if err := validPrefix(prefix); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	var keys []string
	for k := range m.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	m.mu.RUnlock()
	slices.Sort(keys)
	return keys, nil
}
