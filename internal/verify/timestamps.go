package verify

// The RFC 3161 timestamp tokens stored beside checkpoints
// (checkpoints/<chain_id>/<size>.checkpoint.tsr, internal/tsa): each says
// a timestamp authority the auditor trusts saw the checkpoint at a time.
// A token must be signed by the TSA the auditor names (Options.TSA), be
// over the checkpoint's bytes beside it, and its time must lie in the
// batch's window:
//
//	first entry's time_unix_nano - TimestampSkew  <=  token time
//	token time  <=  last entry's time_unix_nano + Options.TimestampMaxDelay
//
// where the entries are those of the batch the checkpoint seals (its
// agentaudit-batch line). Earlier than the window, the entries claim times
// after the checkpoint sealing them was seen; later, the token proves
// little about when the batch was written (a rewritten history gets only
// fresh tokens). See docs/FORMAT.md, "Timestamps".

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tsa"
)

// Violation kinds of the timestamp checks. docs/verify.sql makes none of
// them: SQL cannot check a CMS signature.
const (
	// BadTimestamp: a timestamp token stored beside a checkpoint that is
	// not signed by the given TSA (Options.TSA), is over other bytes than
	// the checkpoint, does not parse, stands beside no checkpoint, or
	// whose time lies outside the batch's window. File is the token.
	BadTimestamp Kind = "bad_timestamp"
	// MissingTimestamp: Options.RequireTimestamps and no stored checkpoint
	// of a chain has a timestamp token beside it. File is the latest
	// checkpoint.
	MissingTimestamp Kind = "missing_timestamp"
)

// TimestampSkew is how much earlier than the batch's first entry a token's
// time may be: the agents' clocks and the TSA's disagree a little.
const TimestampSkew = 5 * time.Minute

// DefaultTimestampMaxDelay is Options.TimestampMaxDelay when zero: how
// much later than the batch's last entry a token's time may be. The
// collector asks for a token as soon as it writes the checkpoint, at most
// batch.max_age after the batch's first entry arrived, and retries while
// the TSA is down; a day covers long spans and outages.
const DefaultTimestampMaxDelay = 24 * time.Hour

// ErrNoTSA: Options.RequireTimestamps without Options.TSA: tokens cannot
// be checked without the TSA's certificate.
var ErrNoTSA = errors.New("verify: timestamps required but no TSA certificate given")

// timestampCheck is a stored token and the checkpoint it stands beside.
type timestampCheck struct {
	key, cpKey string
	chainID    string
	size       int64
	token, cp  []byte // cp nil: no checkpoint beside the token
}

// checkTimestamps checks every token stored beside a checkpoint against
// opts.TSA, within its batch's window from files, and with
// opts.RequireTimestamps that a checkpoint of each chain has a
// valid one. It adds violations and notes to rep.
func checkTimestamps(ctx context.Context, src store.Reader, opts Options, rep *Report, files chainFiles, workers int) error {
	if opts.RequireTimestamps && len(opts.TSA) == 0 {
		return ErrNoTSA
	}
	names, err := src.List(ctx, store.CheckpointsPrefix)
	if err != nil {
		return err
	}
	checks, latest := timestampNames(names)
	if len(checks) > 0 && len(opts.TSA) == 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d timestamp tokens beside the checkpoints not checked: no TSA certificate given", len(checks)))
		return nil
	}
	if len(checks) == 0 && len(opts.TSA) > 0 && !opts.RequireTimestamps {
		rep.Notes = append(rep.Notes, "no timestamp token stored beside the checkpoints: none checked")
	}
	if err := readTimestamps(ctx, src, checks, workers); err != nil {
		return err
	}
	maxDelay := opts.TimestampMaxDelay
	if maxDelay <= 0 {
		maxDelay = DefaultTimestampMaxDelay
	}
	for _, c := range checks {
		if v, ok := checkTimestamp(c, opts.TSA, maxDelay, files); !ok {
			rep.Violations = append(rep.Violations, v)
		}
	}
	if opts.RequireTimestamps {
		requireTimestamps(rep, latest, checks)
	}
	return nil
}

// timestampNames picks from a listing of CheckpointsPrefix the tokens to
// check and, per chain, the key of the latest checkpoint.
func timestampNames(names []string) (checks []timestampCheck, latest map[string]string) {
	latest = map[string]string{}
	sizes := map[string]int64{}
	for _, n := range names {
		if store.IsCheckpointKey(n) {
			if id, size, err := store.ParseCheckpointKey(n); err == nil && size >= sizes[id] {
				latest[id], sizes[id] = n, size
			}
			continue
		}
		if store.IsTimestampKey(n) {
			c := timestampCheck{key: n}
			c.chainID, c.size, _ = store.ParseTimestampKey(n)
			if c.chainID != "" {
				c.cpKey = store.CheckpointKey(c.chainID, c.size)
			}
			checks = append(checks, c)
		}
	}
	for i := range checks {
		if _, ok := slices.BinarySearch(names, checks[i].cpKey); !ok {
			checks[i].cpKey = "" // no checkpoint beside it
		}
	}
	return checks, latest
}

// readTimestamps reads each token and the checkpoint beside it.
func readTimestamps(ctx context.Context, src store.Reader, checks []timestampCheck, workers int) error {
	keys := make([]string, 0, 2*len(checks))
	for _, c := range checks {
		keys = append(keys, c.key)
		if c.cpKey != "" {
			keys = append(keys, c.cpKey)
		}
	}
	data := make([][]byte, len(keys))
	if err := readAll(ctx, src, keys, workers, func(i int, b []byte) { data[i] = b }); err != nil {
		return err
	}
	for i, j := 0, 0; i < len(checks); i++ {
		checks[i].token = data[j]
		j++
		if checks[i].cpKey != "" {
			checks[i].cp = data[j]
			j++
		}
	}
	return nil
}

// checkTimestamp checks one token; ok false gives the violation.
func checkTimestamp(c timestampCheck, trusted []*x509.Certificate, maxDelay time.Duration, files chainFiles) (Violation, bool) {
	v := Violation{File: c.key, ChainID: c.chainID, Seq: NoSeq, Kind: BadTimestamp}
	switch {
	case c.chainID == "":
		v.Detail = "not named <size>.checkpoint.tsr after a checkpoint of a chain"
		return v, false
	case c.cp == nil:
		v.Detail = fmt.Sprintf("timestamp token beside no checkpoint: %s is missing", store.CheckpointKey(c.chainID, c.size))
		return v, false
	}
	opts := tsa.VerifyOptions{TSA: trusted}
	first, last, found := batchWindow(c.cp, files[c.chainID])
	if found {
		opts.NotBefore, opts.NotAfter = first.Add(-TimestampSkew), last.Add(maxDelay)
	}
	_, err := tsa.Verify(c.token, c.cp, opts)
	if err == nil {
		return v, true
	}
	var w *tsa.WindowError
	switch {
	case errors.As(err, &w):
		v.Detail = fmt.Sprintf("token time %s is outside its batch's window [%s, %s] (first entry %s - %v, last entry %s + %v)",
			rfc3339(w.Time), rfc3339(w.NotBefore), rfc3339(w.NotAfter), rfc3339(first), TimestampSkew, rfc3339(last), maxDelay)
	case errors.Is(err, tsa.ErrUntrustedTSA):
		v.Detail = fmt.Sprintf("token not signed by the given TSA: %v", err)
	case errors.Is(err, tsa.ErrImprint):
		v.Detail = fmt.Sprintf("token is not over the checkpoint beside it (%s): %v", c.cpKey, err)
	default:
		v.Detail = err.Error()
	}
	return v, false
}

// batchWindow returns the times of the first and last entries of the batch
// the checkpoint cp seals, read without checking its signature (the
// checkpoint checks report a bad one); found false when cp does not parse
// or no file of the chain holds that batch (the checkpoint checks report
// that too), and the token's time is then not bounded.
func batchWindow(cp []byte, files []*fileResult) (first, last time.Time, found bool) {
	text, _, ok := bytes.Cut(cp, []byte("\n\n"))
	if !ok {
		return time.Time{}, time.Time{}, false
	}
	c, err := checkpoint.Parse(string(text) + "\n")
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	for _, f := range files {
		if f.firstSeq == c.BatchFirst && f.lastSeq == c.BatchLast {
			return time.Unix(0, f.firstTime).UTC(), time.Unix(0, f.lastTime).UTC(), true
		}
	}
	return time.Time{}, time.Time{}, false
}

// requireTimestamps reports each chain whose latest stored checkpoint has
// no timestamp token beside it (one that is there but invalid is already
// a BadTimestamp), and each chain of the trail without a stored
// checkpoint at all: nothing of it is timestamped.
func requireTimestamps(rep *Report, latest map[string]string, checks []timestampCheck) {
	stamped := map[string]int64{} // per chain, the newest checkpoint with a token beside it
	for _, c := range checks {
		if c.cpKey != "" && c.size > stamped[c.chainID] {
			stamped[c.chainID] = c.size
		}
	}
	for _, c := range rep.Chains {
		if _, ok := latest[c.ChainID]; !ok {
			rep.Violations = append(rep.Violations, Violation{File: store.CheckpointsPrefix + c.ChainID + "/", ChainID: c.ChainID, Seq: NoSeq, Kind: MissingTimestamp,
				Detail: "the chain has no stored checkpoint, so no timestamp token"})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(latest)) {
		key := latest[id]
		_, size, _ := store.ParseCheckpointKey(key)
		switch at := stamped[id]; {
		case at == 0:
			rep.Violations = append(rep.Violations, Violation{File: key, ChainID: id, Seq: NoSeq, Kind: MissingTimestamp,
				Detail: "no checkpoint of the chain has a timestamp token beside it (the latest: " + key + ".tsr)"})
		case at < size:
			// A running collector's newest, not stamped yet: the newest
			// stamped one dates the chain up to its size.
			rep.Notes = append(rep.Notes, fmt.Sprintf("chain %s: timestamped up to size %d; the checkpoints after it, up to size %d, have no token yet", id, at, size))
		}
	}
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return "open"
	}
	return t.UTC().Format(time.RFC3339Nano)
}
