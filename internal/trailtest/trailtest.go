// Package trailtest writes trails for tests and benchmarks: entries linked
// by internal/chain, sealed into batch files by internal/parquetfile under
// the keys the exporter uses, each batch with its signed checkpoint and the
// chain's verifier key published beside the trail, as the exporter writes
// them to a local directory. It is test support: no production code imports
// it.
package trailtest // import "github.com/agentaudit/agentaudit/internal/trailtest"

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
)

// Writer appends entries to one chain of a trail under Dir.
type Writer struct {
	Dir string
	// BatchSize is how many entries a batch file holds.
	BatchSize int
	// Day names the dt= partition of the batches (the UTC date).
	Day time.Time
	// Files are the keys of the batch files written, in order.
	Files []string
	// VerifierKey is the chain's published key.
	VerifierKey string

	chain  *chain.Chain
	signer note.Signer
	batch  []entry.Entry
}

// New starts chain chainID under dir, publishing a new verifier key.
func New(dir, chainID string, batchSize int, day time.Time) (*Writer, error) {
	skey, vkey, err := checkpoint.GenerateKey(chainID)
	if err != nil {
		return nil, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	w := &Writer{Dir: dir, BatchSize: batchSize, Day: day, VerifierKey: vkey, chain: chain.New(chainID, chain.Genesis()), signer: signer}
	if err := w.write(store.VerifierKeyKey(chainID, vkey), []byte(vkey+"\n")); err != nil {
		return nil, err
	}
	return w, nil
}

// Add links e into the chain (setting its chain id, seq and hashes) and
// seals a batch when BatchSize entries wait.
func (w *Writer) Add(e entry.Entry) error {
	w.chain.Append(&e)
	w.batch = append(w.batch, e)
	if len(w.batch) >= w.BatchSize {
		return w.Flush()
	}
	return nil
}

// Flush seals the entries waiting, if any, into a batch file and its
// signed checkpoint.
func (w *Writer) Flush() error {
	if len(w.batch) == 0 {
		return nil
	}
	var buf bytes.Buffer
	f, err := parquetfile.Encode(&buf, w.batch)
	if err != nil {
		return err
	}
	key := store.BatchKey(f.ChainID, f.FirstSeq, w.Day)
	if err := w.write(key, buf.Bytes()); err != nil {
		return err
	}
	cp := checkpoint.Checkpoint{ChainID: f.ChainID, Size: f.LastSeq + 1, Head: f.LastHash,
		BatchFirst: f.FirstSeq, BatchLast: f.LastSeq, BatchRoot: f.MerkleRoot}
	msg, err := checkpoint.Sign(cp, w.signer)
	if err != nil {
		return err
	}
	if err := w.write(store.CheckpointKey(f.ChainID, cp.Size), msg); err != nil {
		return err
	}
	w.Files = append(w.Files, key)
	w.batch = w.batch[:0]
	return nil
}

func (w *Writer) write(key string, data []byte) error {
	p := filepath.Join(w.Dir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return fmt.Errorf("trailtest: %w", err)
	}
	return nil
}
