package verify

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentaudit/agentaudit/internal/chain"
)

var genesis = hash64(chain.GenesisHash)

// merge lines up the files of each chain in seq order, checks the links
// between them and builds the report.
func merge(results []*fileResult, from map[string]Start) (*Report, chainFiles) {
	rep := &Report{Files: len(results), Chains: []Chain{}, Violations: []Violation{}}
	byChain := map[string][]*fileResult{}
	for _, r := range results {
		rep.Entries += r.rows
		rep.Violations = append(rep.Violations, r.violations...)
		if r.ok {
			byChain[r.chainID] = append(byChain[r.chainID], r)
		}
	}
	ids := make([]string, 0, len(byChain))
	for id := range byChain {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		var start *Start
		if s, ok := from[id]; ok {
			start = &s
		}
		c, vs := mergeChain(id, byChain[id], start)
		rep.Chains = append(rep.Chains, c)
		rep.Violations = append(rep.Violations, vs...)
	}
	finish(rep)
	return rep, byChain
}

// finish sorts the violations and counts them per chain.
func finish(rep *Report) {
	sortViolations(rep.Violations)
	count := map[string]int{}
	for _, v := range rep.Violations {
		count[v.ChainID]++
	}
	for i := range rep.Chains {
		c := &rep.Chains[i]
		c.Violations = count[c.ChainID]
		c.Intact = c.Violations == 0
	}
	rep.Intact = len(rep.Violations) == 0
}

// mergeChain checks the links between the files of one chain, in the order
// of their first seq; with a start, the first file's link to it.
func mergeChain(id string, files []*fileResult, start *Start) (Chain, []Violation) {
	slices.SortFunc(files, func(a, b *fileResult) int {
		return cmp.Or(cmp.Compare(a.firstSeq, b.firstSeq), cmp.Compare(a.lastSeq, b.lastSeq), strings.Compare(a.key, b.key))
	})
	var vs []Violation
	add := func(f *fileResult, seq, through int64, kind Kind, detail string) {
		vs = append(vs, Violation{File: f.key, ChainID: id, Seq: seq, Through: through, Kind: kind, Detail: detail})
	}
	c := Chain{ChainID: id, Files: len(files)}
	var (
		cur       int64 // highest seq so far
		curHashes []hash64
		curFile   *fileResult
		// inBroken[i]: the first row of files[i] does not link to the file
		// before it.
		inBroken = make([]bool, len(files))
	)
	for i, f := range files {
		c.Entries += f.chainRows
		switch {
		case i == 0:
			c.FirstSeq, c.FirstTime = f.firstSeq, time.Unix(0, f.firstTime).UTC()
			if start != nil {
				linkStart(f, start, add)
			} else if f.firstSeq > 0 {
				add(f, f.firstSeq, 0, MissingFile, fmt.Sprintf("seq 0 to %d missing: the chain's first file starts at seq %d", f.firstSeq-1, f.firstSeq))
			} else if f.firstSeq == 0 {
				for _, p := range f.firstPrevs {
					if !p.eq(genesis) {
						add(f, 0, 0, BrokenLink, fmt.Sprintf("got prev_hash %s, want the genesis hash %s", p, chain.GenesisHash))
					}
				}
			}
		case f.firstSeq <= cur:
			through := min(f.lastSeq, cur)
			add(f, f.firstSeq, through, Duplicate, fmt.Sprintf("seq %d to %d also in %s", f.firstSeq, through, curFile.key))
		default:
			if f.firstSeq > cur+1 {
				what := fmt.Sprintf("seq %d missing", cur+1)
				if f.firstSeq > cur+2 {
					what = fmt.Sprintf("seq %d to %d missing", cur+1, f.firstSeq-1)
				}
				add(f, f.firstSeq, 0, MissingFile, fmt.Sprintf("%s between %s and %s", what, curFile.key, f.key))
			}
			for _, p := range f.firstPrevs {
				if !containsHash(curHashes, p) {
					inBroken[i] = f.firstSeq == cur+1
					add(f, f.firstSeq, 0, BrokenLink, fmt.Sprintf("got prev_hash %s, want %s (entry_hash of seq %d in %s)", p, joinHashes(curHashes), cur, curFile.key))
				}
			}
		}
		switch {
		case curFile == nil || f.lastSeq > cur:
			cur, curHashes, curFile = f.lastSeq, f.lastHashes, f
			c.LastTime = time.Unix(0, f.lastTime).UTC()
		case f.lastSeq == cur:
			for _, h := range f.lastHashes {
				curHashes = appendDistinct(curHashes, h)
			}
		}
	}
	c.LastSeq = cur
	if len(curHashes) > 0 {
		c.LastHash = curHashes[0].String()
	}
	// A file whose rows hash correctly but that links to neither neighbour
	// was not made by this chain's writer: a file of another trail.
	for i := 1; i+1 < len(files); i++ {
		if inBroken[i] && inBroken[i+1] && !files[i].hashBad {
			f := files[i]
			add(f, f.firstSeq, f.lastSeq, ForeignFile, "its rows hash correctly but link to neither neighbouring file: a file of another trail?")
		}
	}
	return c, vs
}
