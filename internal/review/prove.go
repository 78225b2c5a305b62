//go:build cgo

package review

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/parquet-go/parquet-go"

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
// signed root. That reads two columns of each file (with parquet-go) and
// hashes the answer's rows as DuckDB reads them, the very values shown,
// where verifying a file decodes, re-encodes and hashes every row: a run
// in 12 files of 10,000 entries costs 120,000 leaf hashes instead of
// 120,000 rows hashed (docs/PERFORMANCE.md, "Reviewing runs").
//
// A file without a verified checkpoint has no root to prove against: it
// is verified whole (checker.checkOne). So is a file whose proof fails,
// so that its violations say what and where, as auditctl verify would.

// prove proves the rows of audit_entries held by the files of a whose
// checks are pending proof (fileCheck.prove), and verifies whole each
// file whose proof fails.
func (e *Engine) prove(ctx context.Context, a *answer) error {
	var proofs []*proof
	byPath := map[string]*proof{}
	for _, fc := range a.checks {
		if fc.prove {
			p := &proof{fc: fc}
			proofs = append(proofs, p)
			byPath[fc.path] = p
		}
	}
	if len(proofs) == 0 {
		return nil
	}
	if err := e.leaves(ctx, proofs); err != nil {
		return err
	}
	for _, p := range proofs {
		p.checkRoot()
	}
	if err := rowsProven(ctx, a.conn, byPath); err != nil {
		return err
	}
	keys, err := e.checker.loadKeys(ctx)
	if err != nil {
		return err
	}
	for _, p := range proofs {
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
	read   bool              // the file's entry hashes were read
	leaves [][32]byte        // the entry hashes, in seq order
	failed *verify.Violation // the first finding, nil while proven
}

func (p *proof) fail(seq int64, kind verify.Kind, format string, args ...any) {
	if p.failed == nil {
		p.failed = &verify.Violation{File: p.fc.key, ChainID: p.fc.footer.ChainID, Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, args...)}
	}
}

// leaves reads, in parallel, each file's seq and entry_hash columns with
// parquet-go (a column read is far cheaper than DuckDB aggregating a
// string per entry) and checks that the seqs run from the batch's first to
// its last without gap or repeat.
func (e *Engine) leaves(ctx context.Context, proofs []*proof) error {
	jobs := make(chan *proof)
	var wg sync.WaitGroup
	for range min(e.opts.Workers, len(proofs)) {
		wg.Go(func() {
			for p := range jobs {
				p.readLeaves()
			}
		})
	}
	for _, p := range proofs {
		if ctx.Err() != nil {
			break
		}
		jobs <- p
	}
	close(jobs)
	wg.Wait()
	return ctx.Err()
}

// maxHashColumnBytes bounds what the seq and entry_hash columns of a row
// may take uncompressed (8 + 4 + 64 bytes, with room for another writer's
// encoding): a file claiming more is verified whole, within
// verify.CheckFile's decompression bounds, not decoded here.
const maxHashColumnBytes = 160

// readLeaves reads p's file's entry hashes in file order, which is seq
// order in a batch file.
func (p *proof) readLeaves() {
	defer func() {
		if r := recover(); r != nil { // parquet-go on untrusted bytes
			p.fail(verify.NoSeq, verify.NotAuditFile, "decoding seq and entry_hash: %v", r)
		}
	}()
	f := &p.fc.footer
	file, err := os.Open(p.fc.path)
	if err != nil {
		p.fail(verify.NoSeq, verify.NotAuditFile, "%v", err)
		return
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		p.fail(verify.NoSeq, verify.NotAuditFile, "%v", err)
		return
	}
	pf, err := parquet.OpenFile(file, st.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true), parquet.ReadBufferSize(256<<10))
	if err != nil {
		p.fail(verify.NoSeq, verify.NotAuditFile, "%v", err)
		return
	}
	seqCol, ok1 := pf.Schema().Lookup("seq")
	hashCol, ok2 := pf.Schema().Lookup("entry_hash")
	if !ok1 || !ok2 {
		p.fail(verify.NoSeq, verify.NotAuditFile, "no seq or entry_hash column")
		return
	}
	n := f.LastSeq - f.FirstSeq + 1
	if pf.NumRows() != n {
		p.fail(verify.NoSeq, verify.Gap, "%d rows for the batch of seq %d to %d", pf.NumRows(), f.FirstSeq, f.LastSeq)
		return
	}
	var size int64
	for _, rg := range pf.Metadata().RowGroups {
		for _, c := range []int{seqCol.ColumnIndex, hashCol.ColumnIndex} {
			if c < len(rg.Columns) {
				size += rg.Columns[c].MetaData.TotalUncompressedSize
			}
		}
	}
	if size > n*maxHashColumnBytes+1<<20 {
		p.fail(verify.NoSeq, verify.NotAuditFile, "the seq and entry_hash columns claim %d bytes for %d rows", size, n)
		return
	}
	p.leaves = make([][32]byte, 0, n)
	seq := f.FirstSeq
	for _, rg := range pf.RowGroups() {
		cols := rg.ColumnChunks()
		seqs, err := columnValues(cols[seqCol.ColumnIndex])
		if err != nil {
			p.fail(verify.NoSeq, verify.NotAuditFile, "seq: %v", err)
			return
		}
		hashes, err := columnValues(cols[hashCol.ColumnIndex])
		if err != nil {
			p.fail(verify.NoSeq, verify.NotAuditFile, "entry_hash: %v", err)
			return
		}
		if len(seqs) != len(hashes) || int64(len(seqs)) != rg.NumRows() {
			p.fail(verify.NoSeq, verify.NotAuditFile, "a row group of %d rows has %d seqs and %d entry hashes", rg.NumRows(), len(seqs), len(hashes))
			return
		}
		for i := range seqs {
			if seqs[i].IsNull() || seqs[i].Int64() != seq {
				p.fail(seq, verify.Gap, "row %d of the batch of seq %d to %d has seq %v", seq-f.FirstSeq, f.FirstSeq, f.LastSeq, seqs[i])
				return
			}
			var h [32]byte
			b := hashes[i].ByteArray()
			if hashes[i].IsNull() || len(b) != 64 || bytes.ContainsAny(b, "ABCDEF") {
				p.fail(seq, verify.HashMismatch, "entry_hash %q is not 64 lower-case hex digits", b)
				return
			}
			if _, err := hex.Decode(h[:], b); err != nil {
				p.fail(seq, verify.HashMismatch, "entry_hash %q is not 64 lower-case hex digits", b)
				return
			}
			p.leaves = append(p.leaves, h)
			seq++
		}
	}
	if int64(len(p.leaves)) != n {
		p.fail(verify.NoSeq, verify.Gap, "%d rows for the batch of seq %d to %d", len(p.leaves), f.FirstSeq, f.LastSeq)
		return
	}
	p.read = true
}

// columnValues reads every value of a column chunk.
func columnValues(c parquet.ColumnChunk) ([]parquet.Value, error) {
	pages := c.Pages()
	defer pages.Close()
	var out []parquet.Value
	buf := make([]parquet.Value, 1024)
	for {
		pg, err := pages.ReadPage()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		vr := pg.Values()
		for {
			k, err := vr.ReadValues(buf)
			for _, v := range buf[:k] {
				out = append(out, v.Clone())
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				parquet.Release(pg)
				return nil, err
			}
		}
		parquet.Release(pg)
	}
}

// checkRoot checks that the file's entry hashes give the Merkle root its
// signed checkpoint states.
func (p *proof) checkRoot() {
	if !p.read {
		p.fail(verify.NoSeq, verify.NotAuditFile, "the file's entry hashes were not read")
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
