package verify

// The witness cosignatures stored beside checkpoints
// (checkpoints/<chain_id>/<size>.checkpoint.cosig.<witness>, C2SP
// tlog-cosignature lines that the collector got from witnesses, see
// internal/witness): a witness cosigns a checkpoint only when it
// consistently extends the last one it cosigned for the chain, so a
// checkpoint cosigned by witnesses the auditor trusts is one whose
// history no one rewrote behind their back, not even the operator, who
// holds the checkpoint key. With Options.Witnesses, the latest stored
// checkpoint of each chain must carry valid cosignatures of at least
// Options.Cosignatures of those keys. See docs/FORMAT.md, "Witnesses".

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/witness"
)

// MissingCosignature: Options.Witnesses and the latest stored checkpoint
// of a chain (or the chain, which has none) lacks valid cosignatures of
// Options.Cosignatures of the given witness keys; the detail says how
// many verified and what was wrong with the others (absent, or a
// cosignature that does not verify: forged, or made for other checkpoint
// bytes, as a rewritten checkpoint keeps the old one's cosignatures).
// File is the checkpoint. docs/verify.sql cannot check signatures.
const MissingCosignature Kind = "missing_cosignature"

// ErrWitnesses: Options.Witnesses or Options.Cosignatures cannot be used
// (a key that is not a witness verifier key, more cosignatures required
// than keys given, cosignatures required without a key).
var ErrWitnesses = errors.New("verify: witness keys")

// witnessVerifiers checks opts' witness settings and returns the verifiers
// and the number of cosignatures required (0: no check).
func witnessVerifiers(opts Options) ([]note.Verifier, int, error) {
	n := opts.Cosignatures
	switch {
	case n < 0:
		return nil, 0, fmt.Errorf("%w: %d cosignatures required", ErrWitnesses, n)
	case len(opts.Witnesses) == 0 && n > 0:
		return nil, 0, fmt.Errorf("%w: %d cosignatures required but no witness key given", ErrWitnesses, n)
	case len(opts.Witnesses) == 0:
		return nil, 0, nil
	case n == 0:
		n = 1
	case n > len(opts.Witnesses):
		return nil, 0, fmt.Errorf("%w: %d cosignatures required of %d witness keys", ErrWitnesses, n, len(opts.Witnesses))
	}
	vs := make([]note.Verifier, len(opts.Witnesses))
	for i, k := range opts.Witnesses {
		v, err := witness.NewVerifier(k)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: %w", ErrWitnesses, err)
		}
		vs[i] = v
	}
	return vs, n, nil
}

// checkCosignatures requires, with opts.Witnesses, valid cosignatures of
// opts.Cosignatures witness keys on the latest stored checkpoint of each
// chain of the trail. It adds violations to rep.
func checkCosignatures(ctx context.Context, src store.Reader, opts Options, rep *Report) error {
	verifiers, n, err := witnessVerifiers(opts)
	if err != nil || n == 0 {
		return err
	}
	names, err := src.List(ctx, store.CheckpointsPrefix)
	if err != nil {
		return err
	}
	latest, cosigs := cosignatureNames(names)
	for _, c := range rep.Chains {
		size, ok := latest[c.ChainID]
		if !ok {
			rep.Violations = append(rep.Violations, Violation{File: store.CheckpointsPrefix + c.ChainID + "/", ChainID: c.ChainID, Seq: NoSeq,
				Kind: MissingCosignature, Detail: "the chain has no stored checkpoint, so no witness cosigned it"})
			continue
		}
		cpKey := store.CheckpointKey(c.ChainID, size)
		detail, err := cosigned(ctx, src, cpKey, cosigs[cpKey], n, verifiers)
		if err != nil {
			return err
		}
		if detail != "" {
			rep.Violations = append(rep.Violations, Violation{File: cpKey, ChainID: c.ChainID, Seq: size - 1, Kind: MissingCosignature, Detail: detail})
		}
	}
	return nil
}

// cosignatureNames picks from a listing of CheckpointsPrefix the size of
// the latest checkpoint of each chain and the cosignature keys beside
// each checkpoint key.
func cosignatureNames(names []string) (latest map[string]int64, cosigs map[string][]string) {
	latest, cosigs = map[string]int64{}, map[string][]string{}
	for _, n := range names {
		if id, size, err := store.ParseCheckpointKey(n); err == nil {
			if cur, ok := latest[id]; !ok || size > cur {
				latest[id] = size
			}
			continue
		}
		if id, size, _, err := store.ParseCosignatureKey(n); err == nil {
			k := store.CheckpointKey(id, size)
			cosigs[k] = append(cosigs[k], n)
		}
	}
	return latest, cosigs
}

// cosigned checks the cosignatures stored beside the checkpoint cpKey:
// "" when at least n distinct witness keys cosigned it, else what is
// missing. An error means something could not be read.
func cosigned(ctx context.Context, src store.Reader, cpKey string, cosigKeys []string, n int, verifiers []note.Verifier) (string, error) {
	cp, err := src.Get(ctx, cpKey)
	if err != nil {
		return "", err
	}
	valid := map[string]bool{} // "name+hash" of the witness keys that cosigned
	var problems []string
	for _, k := range cosigKeys {
		lines, err := src.Get(ctx, k)
		if err != nil {
			return "", err
		}
		cs, err := witness.VerifyCosignatures(cp, lines, verifiers...)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", k, err))
			continue
		}
		for _, c := range cs {
			valid[fmt.Sprintf("%s+%08x", c.Name, c.KeyHash)] = true
		}
	}
	if len(valid) >= n {
		return "", nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the latest checkpoint has valid cosignatures of %d of the given witness keys, %d required", len(valid), n)
	if len(cosigKeys) == 0 {
		b.WriteString(": no cosignature is stored beside it")
	}
	for _, p := range problems {
		b.WriteString("; ")
		b.WriteString(p)
	}
	return b.String(), nil
}
