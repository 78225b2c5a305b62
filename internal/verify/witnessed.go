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
	"slices"
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
// opts.Cosignatures witness keys on a stored checkpoint of each chain of
// the trail: the newest one that has them, whose root (checked against
// the entries) vouches for the chain up to its size. Checkpoints after it,
// which a running collector has not had cosigned yet (a witness's round
// trip, an outage), are a note, unless a cosignature stored beside one does
// not verify (the checkpoint changed after it was cosigned: rewritten), a
// violation at that checkpoint; a chain with none cosigned is a violation
// at its latest checkpoint. It adds to rep.
func checkCosignatures(ctx context.Context, src store.Reader, opts Options, rep *Report) error {
	verifiers, n, err := witnessVerifiers(opts)
	if err != nil || n == 0 {
		return err
	}
	names, err := src.List(ctx, store.CheckpointsPrefix)
	if err != nil {
		return err
	}
	sizes, cosigs := cosignatureNames(names)
	for _, c := range rep.Chains {
		ss := sizes[c.ChainID]
		if len(ss) == 0 {
			rep.Violations = append(rep.Violations, Violation{File: store.CheckpointsPrefix + c.ChainID + "/", ChainID: c.ChainID, Seq: NoSeq,
				Kind: MissingCosignature, Detail: "the chain has no stored checkpoint, so no witness cosigned it"})
			continue
		}
		latest := ss[len(ss)-1]
		var latestDetail string
		covered := int64(-1)
		for i := len(ss) - 1; i >= 0; i-- {
			cpKey := store.CheckpointKey(c.ChainID, ss[i])
			if i < len(ss)-1 && len(cosigs[cpKey]) == 0 {
				continue // nothing to check: not cosigned (yet)
			}
			detail, bad, err := cosigned(ctx, src, cpKey, cosigs[cpKey], n, verifiers)
			if err != nil {
				return err
			}
			if detail == "" {
				covered = ss[i]
				break
			}
			if bad {
				// A witness cosigned other bytes under this name: the
				// checkpoint was changed after it was cosigned, or the
				// cosignature forged. Never a lag.
				rep.Violations = append(rep.Violations, Violation{File: cpKey, ChainID: c.ChainID, Seq: ss[i] - 1, Kind: MissingCosignature, Detail: detail})
			} else if i == len(ss)-1 {
				latestDetail = detail
			}
		}
		switch {
		case covered < 0 && latestDetail != "":
			rep.Violations = append(rep.Violations, Violation{File: store.CheckpointKey(c.ChainID, latest), ChainID: c.ChainID, Seq: latest - 1,
				Kind: MissingCosignature, Detail: latestDetail + "; no earlier checkpoint of the chain is cosigned either"})
		case covered < 0:
			// The latest's violation (a bad cosignature) is reported.
		case covered < latest:
			rep.Notes = append(rep.Notes, fmt.Sprintf("chain %s: cosigned by %d witness(es) up to size %d; the checkpoints after it, up to size %d, are not cosigned yet (seq %d to %d witnessed by no one)",
				c.ChainID, n, covered, latest, covered, latest-1))
		}
	}
	return nil
}

// cosignatureNames picks from a listing of CheckpointsPrefix the sizes of
// the checkpoints of each chain, ascending, and the cosignature keys
// beside each checkpoint key.
func cosignatureNames(names []string) (sizes map[string][]int64, cosigs map[string][]string) {
	sizes, cosigs = map[string][]int64{}, map[string][]string{}
	for _, n := range names {
		if id, size, err := store.ParseCheckpointKey(n); err == nil {
			sizes[id] = append(sizes[id], size)
			continue
		}
		if id, size, _, err := store.ParseCosignatureKey(n); err == nil {
			k := store.CheckpointKey(id, size)
			cosigs[k] = append(cosigs[k], n)
		}
	}
	for _, ss := range sizes {
		slices.Sort(ss)
	}
	return sizes, cosigs
}

// cosigned checks the cosignatures stored beside the checkpoint cpKey:
// "" when at least n distinct witness keys cosigned it, else what is
// missing. An error means something could not be read.
func cosigned(ctx context.Context, src store.Reader, cpKey string, cosigKeys []string, n int, verifiers []note.Verifier) (detail string, bad bool, err error) {
	cp, err := src.Get(ctx, cpKey)
	if err != nil {
		return "", false, err
	}
	valid := map[string]bool{} // "name+hash" of the witness keys that cosigned
	var problems []string
	for _, k := range cosigKeys {
		lines, err := src.Get(ctx, k)
		if err != nil {
			return "", false, err
		}
		cs, err := witness.VerifyCosignatures(cp, lines, verifiers...)
		if err != nil {
			bad = bad || errors.Is(err, witness.ErrBadCosignature)
			problems = append(problems, fmt.Sprintf("%s: %v", k, err))
			continue
		}
		for _, c := range cs {
			valid[fmt.Sprintf("%s+%08x", c.Name, c.KeyHash)] = true
		}
	}
	if len(valid) >= n && !bad {
		return "", false, nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the checkpoint has valid cosignatures of %d of the given witness keys, %d required", len(valid), n)
	if len(cosigKeys) == 0 {
		b.WriteString(": no cosignature is stored beside it")
	}
	for _, p := range problems {
		b.WriteString("; ")
		b.WriteString(p)
	}
	return b.String(), bad, nil
}
