package recorder

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/wal"
)

// salvaged is what an operator's acceptance of a loss (README, "Recovery")
// makes of the write-ahead log from the corrupt segment on.
type salvaged struct {
	// entries are the corrupt segment's valid prefix, the entry recording
	// the loss (entry.ActionLoss), and every entry still readable after
	// the damage, in that segment and the later ones, renumbered after the
	// loss entry.
	entries []entry.Entry
	// retire are the segments they replace.
	retire []string
}

// salvager salvages one chain's write-ahead log in dir, once an operator
// accepted a loss in it.
type salvager struct {
	dir, chainID string
	// lossEntry makes the entry that records the loss (Config.LossEntry).
	lossEntry func(seg wal.Segment, acc *wal.Acceptance, result string) entry.Entry
	// storedHash returns the entry_hash the trail holds at seq.
	storedHash func(seq int64) (string, error)
}

// salvage applies acc to segs[k], which is corrupt, and to the segments
// after it. before is the chain's head just before segs[k]'s first entry
// when it is known without the store (the previous segment, or the
// store's head); otherwise the entry before is looked up in the store. It
// changes nothing: recovery writes the entries to the log (wal.Replace)
// once its checks pass, before anything is acknowledged. It is
// deterministic, so that a replacement a crash undid is derived again the
// same.
func (sv salvager) salvage(segs []wal.Segment, k int, before chain.Head, acc *wal.Acceptance) (salvaged, error) {
	dir, seg := sv.dir, segs[k]
	var out salvaged
	found, err := wal.AfterDamage(dir, sv.chainID, segs[k:])
	if err != nil {
		return salvaged{}, err
	}
	for _, s := range segs[k:] {
		out.retire = append(out.retire, s.Name)
	}

	prefix := seg.Entries
	head := before
	if n := len(prefix); n > 0 {
		head = chain.Head{Size: prefix[n-1].Seq + 1, Hash: prefix[n-1].EntryHash}
	} else if head.Size != seg.FirstSeq {
		switch {
		case seg.FirstSeq == 0:
			head = chain.Genesis()
		default:
			hash, err := sv.storedHash(seg.FirstSeq - 1)
			if err != nil {
				return salvaged{}, fmt.Errorf("salvaging %s: the entry before it, seq %d: %w", filepath.Join(dir, seg.Name), seg.FirstSeq-1, err)
			}
			head = chain.Head{Size: seg.FirstSeq, Hash: hash}
		}
	}

	rest, lost := wal.Survivors(found, head.Size-1)
	var ranges []string
	for _, r := range lost {
		ranges = append(ranges, seqRange(r[0], r[1]))
	}
	result := "lost seq " + strings.Join(ranges, ", ")
	switch {
	case len(rest) == 0:
		result = fmt.Sprintf("lost whatever the log held from seq %d on", head.Size)
	case len(lost) == 0:
		result = "no seq lost"
	}
	if len(rest) > 0 {
		result += fmt.Sprintf("; seq %d to %d renumbered %d to %d", rest[0].Seq, rest[len(rest)-1].Seq, head.Size+1, head.Size+int64(len(rest)))
	}

	c := chain.New(sv.chainID, head)
	out.entries = append(out.entries, prefix...)
	loss := sv.lossEntry(seg, acc, result)
	c.Append(&loss)
	out.entries = append(out.entries, loss)
	for _, r := range rest {
		r.ChainID, r.Seq, r.PrevHash, r.EntryHash = "", 0, "", ""
		c.Append(&r)
		out.entries = append(out.entries, r)
	}
	return out, nil
}

func seqRange(first, last int64) string {
	if first == last {
		return fmt.Sprint(first)
	}
	return fmt.Sprintf("%d to %d", first, last)
}
