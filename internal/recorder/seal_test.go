package recorder

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/batch"
)

// TestSealQueueBound: the sealed batches waiting for the disk refuse new
// entries by their bytes, so that many small ones (a restart that
// recovered them from the log) do not, and loosely by their number; a
// written batch makes room again.
func TestSealQueueBound(t *testing.T) {
	newSealer := func(maxBytes int) *sealer {
		return &sealer{maxBytes: maxBytes, metrics: newCounts(), wake: make(chan struct{}, 1)}
	}

	s := newSealer(100)
	s.push(pending{b: &batch.Batch{Bytes: 60}})
	require.NoError(t, s.refusal(), "60 of 100 bytes")
	s.push(pending{b: &batch.Batch{Bytes: 50}})
	var refused *RefusedError
	require.ErrorAs(t, s.refusal(), &refused, "110 of 100 bytes")
	assert.Contains(t, refused.Msg, "2 sealed batches (0 MiB) wait to be written to disk")
	s.dequeue()
	assert.NoError(t, s.refusal(), "50 bytes once the first is written")
	s.dequeue()
	assert.Zero(t, s.qBytes)

	s = newSealer(maxSealBytes)
	for range maxSealBatches - 1 {
		s.push(pending{b: &batch.Batch{Bytes: 1000}})
	}
	require.NoError(t, s.refusal(), "%d small batches", maxSealBatches-1)
	s.push(pending{b: &batch.Batch{Bytes: 1000}})
	require.ErrorAs(t, s.refusal(), &refused)
	assert.Contains(t, refused.Msg, "256 sealed batches")
	s.dequeue()
	assert.NoError(t, s.refusal())
}
