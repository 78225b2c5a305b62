package verify

import (
	"bytes"
	"slices"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go/format"

	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
)

// checkRow checks row i, whose canonical encoding hashes to sum, and
// records it when it is of res.chainID; otherwise it returns foreign true
// with its chain and seq.
func (r *fileReader) checkRow(res *fileResult, i int, sum *[32]byte) (foreign bool, chainID string, seq int64) {
	cols := &r.cols
	ts, tun, cid, sq := &cols[colTimestamp], &cols[colTimeUnixNano], &cols[colChainID], &cols[colSeq]
	prev, eh := &cols[colPrevHash], &cols[colEntryHash]
	var hx [64]byte
	hexEncode(&hx, sum)
	s := sq.ints[i]
	ok := !eh.null[i] && bytes.Equal(eh.strs[i], hx[:])
	// Version 1 has no sender field: a sender on a row without an end
	// time is a value no hash covers.
	unhashed := !r.isV2(i) && r.sender(i) != nil
	if !ok || unhashed {
		res.hashBad = true
		got := "NULL"
		if !eh.null[i] {
			got = string(eh.strs[i])
		}
		if unhashed {
			res.add(s, HashMismatch, "got entry_hash %s, want %s and no sender: sender %q on a row without end_time_unix_nano (version 1), which no hash covers", got, string(hx[:]), r.sender(i))
		} else {
			res.add(s, HashMismatch, "got entry_hash %s, want %s", got, string(hx[:]))
		}
		ok = false
	}
	if wantMs := floorMilli(tun.ints[i]); ts.null[i] || tun.null[i] || !ts.isMilli(ts.ints[i], wantMs) {
		got := "NULL"
		if !ts.null[i] {
			got = strconv.FormatInt(ts.ints[i], 10)
		}
		res.add(s, TimestampMismatch, "got timestamp %s (%d per ms), want %d ms (time_unix_nano %d rounded down to ms)", got, ts.perMs, wantMs, tun.ints[i])
	}
	if at := &cols[colActionType]; !at.null[i] && string(at.strs[i]) == entry.ActionLoss {
		res.add(s, RecordedLoss, "%s (accepted by %s: %s)",
			textOf(cols[colResult].value(i)), textOf(cols[colApprover].value(i)), textOf(cols[colReasoning].value(i)))
	}
	if cid.null[i] || string(cid.strs[i]) != res.chainID {
		return true, string(cid.value(i)), s
	}
	r.recs = append(r.recs, rec{seq: s, tun: tun.ints[i], prev: prev.strs[i], eh: eh.strs[i], raw: *sum, rawOK: ok})
	if r.apc != nil || r.apKnown != nil {
		r.approvalRow(res, i)
	}
	return false, "", 0
}

// checkRows makes the checks between rows of the file, in seq order, with
// the meaning of docs/verify.sql: gaps, duplicates and links inside the
// file. Links into and out of the file are checked by merge.
func (r *fileReader) checkRows(res *fileResult) {
	recs := r.recs
	// The common case, in one pass: consecutive seqs, each linked to the
	// row before.
	clean := true
	for i := 1; i < len(recs) && clean; i++ {
		clean = recs[i].seq == recs[i-1].seq+1 && recs[i].prev.eq(recs[i-1].eh)
	}
	if clean {
		first, last := &recs[0], &recs[len(recs)-1]
		res.firstSeq, res.firstTime, res.firstPrevs = first.seq, first.tun, cloneHashes([]hash64{first.prev})
		res.lastSeq, res.lastTime, res.lastHashes = last.seq, last.tun, cloneHashes([]hash64{last.eh})
		return
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].seq < recs[i-1].seq {
			res.add(recs[i].seq, Reordering, "row %d has seq %d after seq %d: rows are not in ascending seq", i, recs[i].seq, recs[i-1].seq)
			slices.SortStableFunc(recs, func(a, b rec) int {
				switch {
				case a.seq < b.seq:
					return -1
				case a.seq > b.seq:
					return 1
				}
				return 0
			})
			break
		}
	}
	var prevHashes, hashes []hash64
	prevSeq := int64(0)
	for i := 0; i < len(recs); {
		j := i
		for j < len(recs) && recs[j].seq == recs[i].seq {
			j++
		}
		g, s := recs[i:j], recs[i].seq
		hashes = hashes[:0]
		for _, x := range g {
			hashes = appendDistinct(hashes, x.eh)
		}
		if len(g) > 1 {
			res.add(s, Duplicate, "%d rows, %d distinct entry_hash", len(g), len(hashes))
		}
		if i == 0 {
			res.firstSeq, res.firstTime = s, g[0].tun
			for _, x := range g {
				res.firstPrevs = appendDistinct(res.firstPrevs, x.prev)
			}
		} else {
			switch {
			case s == prevSeq+2:
				res.add(s, Gap, "seq %d missing", prevSeq+1)
			case s > prevSeq+2:
				res.add(s, Gap, "seq %d to %d missing", prevSeq+1, s-1)
			}
			var seen []hash64
			for _, x := range g {
				if !containsHash(prevHashes, x.prev) && !slices.ContainsFunc(seen, x.prev.same) {
					seen = append(seen, x.prev)
					res.add(s, BrokenLink, "got prev_hash %s, want %s (entry_hash of seq %d)", x.prev, joinHashes(prevHashes), prevSeq)
				}
			}
		}
		prevHashes, hashes = hashes, prevHashes
		prevSeq = s
		i = j
	}
	res.lastSeq, res.lastTime = prevSeq, recs[len(recs)-1].tun
	res.lastHashes = cloneHashes(prevHashes)
	res.firstPrevs = cloneHashes(res.firstPrevs)
}

func joinHashes(hs []hash64) string {
	s := make([]string, len(hs))
	for i, h := range hs {
		s[i] = h.String()
	}
	return strings.Join(s, " or ")
}

// checkFooter compares the footer metadata with the rows. version is the
// format version of the file's columns, merkleRoot the root of the rows'
// entry hashes in seq order.
func checkFooter(res *fileResult, kv []format.KeyValue, version, merkleRoot string) {
	get := func(key string) (string, bool) {
		for i := len(kv) - 1; i >= 0; i-- {
			if kv[i].Key == key {
				return kv[i].Value, true
			}
		}
		return "", false
	}
	want := []struct {
		key, value string
		seq        int64
	}{
		{parquetfile.KeyFormatVersion, version, res.firstSeq},
		{parquetfile.KeyChainID, res.chainID, res.firstSeq},
		{parquetfile.KeyFirstSeq, strconv.FormatInt(res.firstSeq, 10), res.firstSeq},
		{parquetfile.KeyLastSeq, strconv.FormatInt(res.lastSeq, 10), res.lastSeq},
		{parquetfile.KeyEntryCount, strconv.FormatInt(res.rows, 10), res.firstSeq},
		{parquetfile.KeyPrevHash, res.firstPrevs[0].String(), res.firstSeq},
		{parquetfile.KeyLastHash, res.lastHashes[0].String(), res.lastSeq},
		{parquetfile.KeyMerkleRoot, merkleRoot, res.firstSeq},
	}
	for _, w := range want {
		got, ok := get(w.key)
		switch {
		case !ok:
			res.add(w.seq, FooterMissing, "footer key %q missing", w.key)
		case got == w.value:
		case w.key == parquetfile.KeyChainID:
			res.add(w.seq, ForeignFile, "footer key %q = %q, but the rows are chain %q", w.key, got, w.value)
		default:
			res.add(w.seq, FooterMismatch, "footer key %q = %q, want %q (from the rows)", w.key, got, w.value)
		}
	}
}

// ParseFileKey parses the last two segments of a file's key as a batch
// file name (dt=YYYY-MM-DD/<chain_id>-<first seq, 20 digits>.parquet).
func ParseFileKey(key string) (chainID string, firstSeq int64, err error) {
	chainID, firstSeq, _, err = store.ParseBatchName(key)
	return chainID, firstSeq, err
}

// checkName compares the file name with the rows.
func checkName(res *fileResult) {
	name, seq, err := ParseFileKey(res.key)
	switch {
	case err != nil:
		res.add(res.firstSeq, FileNameMismatch, "not a batch file name (dt=YYYY-MM-DD/<chain_id>-<first seq, 20 digits>.parquet)")
	case name != res.chainID:
		res.add(res.firstSeq, ForeignFile, "file name says chain %q, the rows are chain %q", name, res.chainID)
	case seq != res.firstSeq:
		res.add(res.firstSeq, FileNameMismatch, "file name says first seq %d, the first row is seq %d", seq, res.firstSeq)
	}
}
