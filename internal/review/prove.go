//go:build cgo

package review

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/merkle"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// Proving an answer's entries instead of verifying its files whole.
//
// A question about some runs needs their entries to be the ones the
// collector sealed, not every other entry of the files that hold them. A
// batch's signed checkpoint states the RFC 6962 Merkle root of its entry
// hashes in seq order, so each entry is proven by: its row hashes to its
// entry_hash (chain.Hash, the writer's and verifier's own encoding), and
// the file's entry_hash column, seq first to last without gap, gives the
// signed root. That reads one column of each file and hashes the answer's
// rows, where verifying a file reads and hashes every row: a run in 12
// files of 10,000 entries costs 120,000 leaf hashes instead of 120,000
// decoded, re-encoded and hashed rows (docs/PERFORMANCE.md, "Reviewing
// runs"). The rows proven are the rows DuckDB reads, the very values shown.
//
// A file without a verified checkpoint has no root to prove against: it
// is verified whole (checker.checkOne). So is a file whose proof fails,
// so that its violations say what and where, as auditctl verify would.

// prove proves the rows of audit_entries held by the files of a whose
// checks are pending proof (fileCheck.prove), and verifies whole each
// file whose proof fails.
func (e *Engine) prove(ctx context.Context, a *answer) error {
	var pending []*fileCheck
	for _, fc := range a.checks {
		if fc.prove {
			pending = append(pending, fc)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	paths := make([]string, len(pending))
	byPath := make(map[string]*proof, len(pending))
	for i, fc := range pending {
		paths[i] = fc.path
		byPath[fc.path] = &proof{fc: fc}
	}
	if err := leaves(ctx, a.conn, paths, byPath); err != nil {
		return err
	}
	for _, p := range byPath {
		p.checkRoot()
	}
	if err := rowsProven(ctx, a.conn, byPath); err != nil {
		return err
	}
	keys, err := e.checker.loadKeys(ctx)
	if err != nil {
		return err
	}
	for _, p := range byPath {
		fc := p.fc
		fc.prove = false
		if p.failed == nil {
			fc.proven = true
			continue
		}
		// Say what is wrong as verify would; the proof's own finding when
		// the file is intact to the verifier but not as DuckDB reads it.
		full := e.checker.checkOne(ctx, keys, fc.key, fc.path)
		*fc = *full
		if len(fc.violations) == 0 {
			fc.violations = []verify.Violation{*p.failed}
		}
	}
	a.links = links(a.checks)
	return nil
}

// proof is one file's proof in progress.
type proof struct {
	fc     *fileCheck
	read   bool              // DuckDB read the file's entry hashes
	leaves [][32]byte        // the entry hashes, in seq order
	failed *verify.Violation // the first finding, nil while proven
}

func (p *proof) fail(seq int64, kind verify.Kind, format string, args ...any) {
	if p.failed == nil {
		p.failed = &verify.Violation{File: p.fc.key, ChainID: p.fc.footer.ChainID, Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, args...)}
	}
}

// leaves reads the entry hashes of every row of paths, in seq order, and
// says whether the seqs run from the batch's first to its last without
// gap or repeat. DuckDB joins each file's hashes into one string: a row
// per file through database/sql, not one per entry.
func leaves(ctx context.Context, conn *sql.Conn, paths []string, byPath map[string]*proof) error {
	rows, err := conn.QueryContext(ctx, "SELECT filename, count(*), count(DISTINCT seq), min(seq), max(seq),"+
		" string_agg(entry_hash, '/' ORDER BY seq) FROM read_parquet("+pathList(paths)+
		", union_by_name = true, hive_partitioning = false, filename = true) GROUP BY filename")
	if err != nil {
		return fmt.Errorf("review: reading entry hashes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var file string
		var n, distinct, lo, hi int64
		var joined sql.RawBytes
		if err := rows.Scan(&file, &n, &distinct, &lo, &hi, &joined); err != nil {
			return fmt.Errorf("review: reading entry hashes: %w", err)
		}
		p := byPath[file]
		if p == nil {
			return fmt.Errorf("review: reading entry hashes: DuckDB named file %q", file)
		}
		p.read = true
		f := &p.fc.footer
		if n != distinct || lo != f.FirstSeq || hi != f.LastSeq || n != hi-lo+1 {
			p.fail(verify.NoSeq, verify.Gap, "%d rows, %d distinct seqs from %d to %d, for the batch of seq %d to %d", n, distinct, lo, hi, f.FirstSeq, f.LastSeq)
			continue
		}
		// n hashes of 64 lower-case hex digits, each but the last followed
		// by '/'.
		if int64(len(joined)) != 65*n-1 {
			p.fail(verify.NoSeq, verify.HashMismatch, "an entry_hash of seq %d to %d is not 64 hex digits", lo, hi)
			continue
		}
		p.leaves = make([][32]byte, n)
		for i := range p.leaves {
			h := joined[65*i : 65*i+64]
			if _, err := hex.Decode(p.leaves[i][:], h); err != nil || bytes.ContainsAny(h, "ABCDEF") || (i+1 < len(p.leaves) && joined[65*i+64] != '/') {
				p.fail(lo+int64(i), verify.HashMismatch, "entry_hash %q is not 64 hex digits", h)
				break
			}
		}
	}
	return rows.Err()
}

// checkRoot checks that the file's entry hashes give the Merkle root its
// signed checkpoint states.
func (p *proof) checkRoot() {
	if !p.read {
		p.fail(verify.NoSeq, verify.NotAuditFile, "DuckDB read no row of the file")
	}
	if p.failed != nil {
		return
	}
	f := &p.fc.footer
	var fold merkle.Fold
	root, _ := fold.Root(len(p.leaves), func(i int, dst *[32]byte) error { *dst = p.leaves[i]; return nil })
	if got := hex.EncodeToString(root[:]); got != p.fc.checkpoint.BatchRoot {
		p.fail(verify.NoSeq, verify.CheckpointMismatch, "the entry hashes of seq %d to %d have Merkle root %s; the signed checkpoint says %s",
			f.FirstSeq, f.LastSeq, got, p.fc.checkpoint.BatchRoot)
	}
}

// rowsProven hashes every row of audit_entries in the files of byPath and
// checks it against its entry_hash, its place in the batch and its link.
func rowsProven(ctx context.Context, conn *sql.Conn, byPath map[string]*proof) error {
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	rows, err := conn.QueryContext(ctx, "SELECT "+stepColumns+" FROM audit_entries WHERE file IN (SELECT unnest("+pathList(paths)+"))")
	if err != nil {
		return fmt.Errorf("review: reading the entries: %w", err)
	}
	defer rows.Close()
	var s Step
	var file string
	for rows.Next() {
		if err := scanStep(rows, &s, &file); err != nil {
			return err
		}
		p := byPath[file]
		if p == nil || p.failed != nil {
			continue
		}
		e := stepEntry(&s)
		h := chain.Hash(&e)
		f := &p.fc.footer
		i := s.Seq - f.FirstSeq
		switch {
		case s.ChainID != f.ChainID:
			p.fail(s.Seq, verify.FooterMismatch, "a row of chain %s in the batch of chain %s", s.ChainID, f.ChainID)
		case i < 0 || i >= int64(len(p.leaves)):
			p.fail(s.Seq, verify.Gap, "seq %d outside the batch's %d to %d", s.Seq, f.FirstSeq, f.LastSeq)
		case s.EndTimeUnixNano == nil && s.Sender != nil:
			p.fail(s.Seq, verify.HashMismatch, "a row of format version 1 has a sender, which no hash covers")
		case h != s.EntryHash:
			p.fail(s.Seq, verify.HashMismatch, "the row hashes to %s, its entry_hash is %s", h, s.EntryHash)
		case hex.EncodeToString(p.leaves[i][:]) != s.EntryHash:
			p.fail(s.Seq, verify.HashMismatch, "entry_hash %s is not the batch's at seq %d", s.EntryHash, s.Seq)
		case i > 0 && hex.EncodeToString(p.leaves[i-1][:]) != s.PrevHash:
			p.fail(s.Seq, verify.BrokenLink, "prev_hash %s, the entry_hash of seq %d is %x", s.PrevHash, s.Seq-1, p.leaves[i-1])
		case i == 0 && s.PrevHash != f.PrevHash:
			p.fail(s.Seq, verify.BrokenLink, "prev_hash %s, the batch's footer says %s", s.PrevHash, f.PrevHash)
		case s.Timestamp.UnixMilli() != floorDiv(s.TimeUnixNano, 1e6):
			p.fail(s.Seq, verify.TimestampMismatch, "timestamp %s is not time_unix_nano %d rounded down to ms", s.Timestamp, s.TimeUnixNano)
		}
	}
	return rows.Err()
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// stepEntry is the entry s shows.
func stepEntry(s *Step) entry.Entry {
	return entry.Entry{
		TimeUnixNano: s.TimeUnixNano, EndTimeUnixNano: s.EndTimeUnixNano, ChainID: s.ChainID, Seq: s.Seq,
		ExecutionID: s.ExecutionID, TraceID: s.TraceID, SpanID: s.SpanID, ParentSpanID: s.ParentSpanID,
		AgentID: s.AgentID, AgentName: s.AgentName, ServiceName: s.ServiceName, Principal: s.Principal, Sender: s.Sender,
		ActionType: s.ActionType, TargetSystem: s.TargetSystem, TargetResource: s.TargetResource,
		ProposedValue: s.ProposedValue, PreviousValue: s.PreviousValue, Reasoning: s.Reasoning, Approver: s.Approver,
		Result: s.Result, StatusCode: s.StatusCode, Attributes: s.Attributes, Validation: s.Validation,
		PrevHash: s.PrevHash, EntryHash: s.EntryHash,
	}
}
