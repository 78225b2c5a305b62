package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tlogtree"
	"github.com/agentaudit/agentaudit/internal/witness"
)

// witnessStopGrace is how long shutdown waits for the witnesses to
// cosign the last checkpoint (the one the recorder's shutdown seals)
// before it stops trying; the next start's checkpoints catch up.
const witnessStopGrace = 2 * time.Second

// witnessLogEvery bounds the logging of a witness's failures: retries
// come every few seconds while a witness is down.
const witnessLogEvery = time.Minute

// witnesses gets the chain's checkpoints cosigned by the configured
// witnesses (checkpoint.witnesses): each has a witness.Submitter on a
// goroutine of its own, so that a witness down, slow or refusing delays
// its cosignatures only, never the sealer or intake. Proofs are read
// from the chain's tiles (tlogtree) through the recorder, cosignatures
// stored beside the checkpoint (store.CosignatureKey).
type witnesses struct {
	subs   []*witnessSub
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// witnessSub is one witness's Submitter and when its failures were last
// logged.
type witnessSub struct {
	name string
	sub  *witness.Submitter

	mu     sync.Mutex
	logged time.Time
}

// startWitnesses starts a Submitter per configured witness, before the
// recorder so that the checkpoints its recovery writes are offered too
// (proofs and stores wait, retried, until it runs).
func (e *auditExporter) startWitnesses() error {
	if len(e.cfg.Checkpoint.Witnesses) == 0 {
		return nil
	}
	ws := &witnesses{}
	for _, wc := range e.cfg.Checkpoint.Witnesses {
		s, err := e.newWitnessSub(wc)
		if err != nil {
			return fmt.Errorf("checkpoint: \"witnesses\" %q: %w", wc.Name, err)
		}
		ws.subs = append(ws.subs, s)
	}
	if err := e.tel.observeWitnesses(e.telemetrySettings, func() time.Time { return e.now() }, ws.status); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	ws.cancel = cancel
	for _, s := range ws.subs {
		ws.wg.Go(func() { s.sub.Run(ctx) })
	}
	e.witnesses.Store(ws)
	return nil
}

// newWitnessSub makes the Submitter of one witness.
func (e *auditExporter) newWitnessSub(wc WitnessConfig) (*witnessSub, error) {
	v, err := witness.NewVerifier(wc.Key)
	if err != nil {
		return nil, err
	}
	s := &witnessSub{name: wc.Name}
	s.sub, err = witness.NewSubmitter(witness.SubmitterConfig{
		URL:      wc.URL,
		Verifier: v,
		Client:   &witness.Client{HTTPClient: &http.Client{}},
		Timeout:  wc.Timeout,
		Proof:    e.consistencyProof,
		Store: func(ctx context.Context, size uint64, cosigs []byte) error {
			return e.storeCosignature(ctx, wc.Name, size, cosigs)
		},
		Failed: func(err error) { e.witnessFailed(s, err) },
		Now:    func() time.Time { return e.now() },
	})
	return s, err
}

// consistencyProof is the proof from oldSize to the checkpoint at size,
// read from the tiles the recorder wrote before the checkpoint.
func (e *auditExporter) consistencyProof(ctx context.Context, oldSize, size uint64, root []byte) ([][]byte, error) {
	r, err := tlogtree.NewReader(e.cfg.ChainID, func(key string) ([]byte, error) { return e.rec.Get(ctx, key) })
	if err != nil {
		return nil, err
	}
	var h tlog.Hash
	copy(h[:], root)
	p, err := r.ConsistencyProof(int64(oldSize), int64(size), h)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoProof, err)
	}
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out, nil
}

// Failures of ours, told apart for the metric's kind.
var (
	errNoProof              = errors.New("no consistency proof from the stored tiles")
	errCosignatureNotStored = errors.New("cosignature not stored")
)

// storeCosignature writes a witness's verified cosignature lines beside
// the checkpoint. A key that holds other lines already holds another
// cosignature of the same checkpoint by the same witness (one made before
// a restart): as good.
func (e *auditExporter) storeCosignature(ctx context.Context, name string, size uint64, cosigs []byte) error {
	err := e.rec.PutBeside(ctx, store.CosignatureKey(e.cfg.ChainID, int64(size), name), cosigs)
	if err == nil || errors.Is(err, store.ErrConflict) {
		e.tel.witnessCosignature(name)
		return nil
	}
	return fmt.Errorf("%w: %w", errCosignatureNotStored, err)
}

// offer hands a signed checkpoint to every witness (the recorder's
// Checkpointed, on the sealer's goroutine: it never blocks). Checkpoints
// of format 1, whose third line is no tree root, are not for witnesses.
func (ws *witnesses) offer(note []byte) {
	i := bytes.LastIndex(note, []byte("\n\n"))
	if i < 0 {
		return
	}
	if c, err := checkpoint.Parse(string(note[:i+1])); err != nil || c.Root == "" {
		return
	}
	for _, s := range ws.subs {
		_ = s.sub.Offer(note) // Parse accepted it: it is well formed
	}
}

// shutdownWitnesses stops the witnesses' Submitters, after the
// recorder's last checkpoint.
func (e *auditExporter) shutdownWitnesses(ctx context.Context) {
	ws := e.witnesses.Swap(nil)
	if ws == nil {
		return
	}
	ws.stop(ctx)
	if e.tel.witnessesObserve != nil {
		_ = e.tel.witnessesObserve.Unregister()
	}
}

// stop gives the witnesses until the grace (or ctx) ends to cosign what
// they were offered, then stops them.
func (ws *witnesses) stop(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, witnessStopGrace)
	defer cancel()
	for _, s := range ws.subs {
		if !s.sub.Wait(ctx) {
			break
		}
	}
	ws.cancel()
	ws.wg.Wait()
}

// witnessStatus is one witness's state, for the metrics.
type witnessStatus struct {
	name string
	witness.Status
}

func (ws *witnesses) status() []witnessStatus {
	out := make([]witnessStatus, len(ws.subs))
	for i, s := range ws.subs {
		out[i] = witnessStatus{name: s.name, Status: s.sub.Status()}
	}
	return out
}

// witnessFailed counts a failed attempt and logs it at most once a
// minute per witness; a refusal of a checkpoint as inconsistent is an
// error: the trail's history is not the one the witness saw.
func (e *auditExporter) witnessFailed(s *witnessSub, err error) {
	kind := witnessErrorKind(err)
	e.tel.witnessError(s.name, kind)
	now := e.now()
	s.mu.Lock()
	quiet := now.Sub(s.logged) < witnessLogEvery
	if !quiet {
		s.logged = now
	}
	s.mu.Unlock()
	if quiet {
		return
	}
	fields := []zap.Field{zap.String("witness", s.name), zap.String("kind", kind), zap.Error(err)}
	if errors.Is(err, witness.ErrBadProof) {
		e.logger.Error("Witness refuses the checkpoint as inconsistent with the one it cosigned: the trail's history differs from what it saw", fields...)
		return
	}
	e.logger.Warn("Witness did not cosign the checkpoint; retrying (logged at most once a minute)", fields...)
}

// witnessErrorKind is the kind attribute of a failure: unavailable
// (network, timeout, 5xx, 429), bad_cosignature (the answer does not
// verify with the configured key), proof (the tiles gave no proof), store
// (the cosignature could not be stored), or refused (the witness refused
// the checkpoint).
func witnessErrorKind(err error) string {
	switch {
	case errors.Is(err, witness.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return "unavailable"
	case errors.Is(err, witness.ErrBadCosignature), errors.Is(err, witness.ErrTooFewCosignatures):
		return "bad_cosignature"
	case errors.Is(err, errNoProof):
		return "proof"
	case errors.Is(err, errCosignatureNotStored):
		return "store"
	}
	return "refused"
}
