package recorder

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/store"
)

// TestDeliveryQueue: what an earlier run spooled is queued first and
// counted as queued batches; the verifier key, left in the spool, is not
// queued twice while it waits; the spool's limit refuses new entries once
// its bytes reach it.
func TestDeliveryQueue(t *testing.T) {
	spool, err := store.NewFS(filepath.Join(t.TempDir(), "batches"))
	require.NoError(t, err)
	m := newCounts()
	d := newDelivery(spool, spool, 100, &retrier{logger: zap.NewNop(), metrics: m, abort: make(chan struct{})}, m, zap.NewNop())
	vkey := store.VerifierKeyKey("c1", "c1+1234abcd+AAAA")
	d.resume([]spooled{
		{key: vkey, size: 10, since: t0},
		{key: "dt=2026-03-09/c1-00000000000000000000.parquet", size: 60, since: t0, batch: true},
	})
	assert.Equal(t, int64(1), m.queued.Load(), "a spooled batch is queued")
	require.NoError(t, d.refusal(), "70 of 100 bytes")

	d.add(spooled{key: vkey, since: t0.Add(1)})
	d.add(spooled{key: "dt=2026-03-09/c1-00000000000000000004.parquet", size: 30, since: t0, batch: true},
		spooled{key: store.CheckpointKey("c1", 8), size: 5, since: t0})
	bytes, objects, since := d.backlog()
	assert.Equal(t, int64(105), bytes)
	assert.Equal(t, 4, objects, "the verifier key once, two batches, a checkpoint")
	assert.Equal(t, t0, since)
	assert.Equal(t, int64(1), m.queued.Load(), "a sealed batch was counted when it was sealed")

	var refused *RefusedError
	require.ErrorAs(t, d.refusal(), &refused)
	assert.Contains(t, refused.Msg, "is full (105 of 100 bytes)")

	// Once uploaded, a key is no longer queued: added again, it is queued
	// again (after the others).
	d.dequeue(d.q[0])
	d.add(spooled{key: vkey, size: 10, since: t0.Add(2)})
	bytes, objects, _ = d.backlog()
	assert.Equal(t, int64(105), bytes)
	assert.Equal(t, 4, objects)
	assert.Equal(t, vkey, d.q[len(d.q)-1].key)
}
