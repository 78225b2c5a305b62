package recorder

// What the recorder is given and what it tells: its configuration, its
// stores, the metrics it reports and the errors it returns. Every part
// reads these; none of them reads the parts.

import (
	"errors"
	"time"

	"github.com/agentaudit/agentaudit/internal/batch"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/wal"
)

// ErrShutdown is returned for entries that arrive after shutdown began.
var ErrShutdown = errors.New("agentaudit exporter is shut down")

// RefusedError is a refusal the client may retry later: the spool is full,
// sealed batches wait for the disk, or the write-ahead log failed. Msg says
// why, for the client.
type RefusedError struct {
	Msg string
	// Chained: the entries were chained, but the log failed before they
	// were durable; otherwise nothing of them was.
	Chained bool
}

func (e *RefusedError) Error() string { return e.Msg }

// Config is what the recorder needs of the exporter's configuration.
type Config struct {
	ChainID string
	// SpoolDir holds the recorder's local state: the lock, the head
	// marker, a generated signing key.
	SpoolDir string
	// StoreID names the store the chain is written to, for the head marker
	// (a marker of another store is ignored).
	StoreID string
	Batch   batch.Limits
	// SpoolMaxBytes bounds the batches waiting in the spool for a remote
	// store; past it, Append refuses.
	SpoolMaxBytes int64
	CommitDelay   time.Duration
	Checkpoint    CheckpointConfig
	// LossEntry maps what an operator's acceptance of a loss says into the
	// entry that records the loss in the trail (salvage.go).
	LossEntry func(seg wal.Segment, acc *wal.Acceptance, result string) entry.Entry
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Failed is told, once, that the write-ahead log broke: audit data is
	// refused until a restart. Optional.
	Failed func(error)
	// Checkpointed is told each signed checkpoint once it is written (to
	// the store, or with a remote store to the spool and queued for
	// upload, so that what PutBeside adds beside it follows it): the chain's size
	// it covers and the signed note. It is called from the sealer's
	// goroutine, in chain order, and must not block. Optional.
	Checkpointed func(size int64, note []byte)
}

// CheckpointConfig names the checkpoints' signing key and mirror.
type CheckpointConfig struct {
	// KeyFile or KeyEnv holds the signer key; with neither, one is
	// generated under SpoolDir/keys on first start.
	KeyFile, KeyEnv string
	// MirrorDir is a second place for checkpoints, or "".
	MirrorDir string
}

// Stores are where entries and batches go: the write-ahead log directory,
// the trail's store and, for a remote store, the local spool where sealed
// batches wait until the store has them.
type Stores struct {
	WALDir string
	Trail  store.Store
	Spool  *store.FS // nil when Trail is itself local
	// Offline is why the remote store could not be reached at start (an
	// outage, store.ErrUnavailable), or nil.
	Offline error
}

// readable returns the stores batches can be read from at start: the
// spool first (it holds the newest), then the trail's store unless it was
// unreachable.
func (st Stores) readable() []store.Store {
	var out []store.Store
	if st.Spool != nil {
		out = append(out, st.Spool)
	}
	if st.Offline == nil {
		out = append(out, st.Trail)
	}
	return out
}

// Metrics is told what the recorder does, for the exporter's telemetry.
// Its methods must be cheap and safe for concurrent use.
type Metrics interface {
	// Head is the chain's head after entries were appended.
	Head(chain.Head)
	// Queued adds n (may be negative) to the sealed batches not yet in
	// the store.
	Queued(n int64)
	// Sealed counts a batch of n entries sealed to local disk.
	Sealed(n int)
	// Stored counts a batch of n entries written to the store.
	Stored(n int)
	// StoreError counts a failed write; conflict when another writer
	// holds the key.
	StoreError(conflict bool)
}
