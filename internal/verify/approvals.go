package verify

// The approval checks of docs/APPROVALS.md ("The checks"): approvals that
// the approval service recorded are matched by id, across every chain of
// the trail, with the writes that name them (self_approved,
// approval_mismatch, approval_reused), and the writes that name none are
// checked against the policies in force in their chain (unapproved_write).
//
// Memory: while the files are read, each keeps only its approval-related
// rows (the service's entries and the writes that carry an approval id,
// with a hash of their proposed values) and the writes without one that it
// cannot check yet: those before its first policy entry, whose policies in
// force are in another file. Those are kept within a budget shared by all
// files (pendingBudget); a file past it keeps none, and is read again once
// the policies are known, when some are in force at its start.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/agentaudit/agentaudit/internal/approvalpolicy"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/store"
)

// The columns read here beside those file.go names.
const (
	colTargetSystem   = colActionType + 1
	colTargetResource = colActionType + 2
	colProposedValue  = colActionType + 3
	colStatusCode     = colResult + 1
	colAttributes     = colResult + 2
	colValidation     = colResult + 3
)

// pendingBudget bounds the bytes of the writes without an approval id kept,
// over all files, until the policies in force are known.
var pendingBudget int64 = 16 << 20 // a variable for the tests

// The action types of the decisions (the expiry is the service's own).
const (
	actionApprove = "approve"
	actionReject  = "reject"
	actionRequest = "request_approval"
	actionWrite   = "write"
)

// The quoted keys whose presence in attributes makes a row worth parsing.
var (
	quotedServiceID = []byte(`"` + entry.AttrApprovalID + `"`)
	quotedWriteID   = []byte(`"` + entry.KeyApprovalID + `"`)
	quotedToolName  = []byte(`"` + entry.KeyToolName + `"`)
	reservedKey     = []byte(`"reserved_key"`)
)

// approvalCollector is shared by the readers of one verification.
type approvalCollector struct {
	pending atomic.Int64 // bytes of pending writes kept
}

// apRow locates a row.
type apRow struct {
	file  string
	chain string
	seq   int64
	tun   int64
}

// before orders rows for "the first": by time_unix_nano, chain, seq.
func (a *apRow) before(b *apRow) bool {
	return cmp.Or(cmp.Compare(a.tun, b.tun), strings.Compare(a.chain, b.chain), cmp.Compare(a.seq, b.seq)) < 0
}

// recordedBefore: a was recorded before b (same chain: lower seq; else an
// earlier time_unix_nano).
func (a *apRow) recordedBefore(b *apRow) bool {
	if a.chain == b.chain {
		return a.seq < b.seq
	}
	return a.tun < b.tun
}

// optSum is a nullable value kept as its SHA-256.
type optSum struct {
	null bool
	sum  [32]byte
}

func sumOf(v []byte) optSum {
	if v == nil {
		return optSum{null: true}
	}
	return optSum{sum: sha256.Sum256(v)}
}

// optStr is a nullable string.
type optStr struct {
	null bool
	s    string
}

func strOf(v []byte) optStr {
	if v == nil {
		return optStr{null: true}
	}
	return optStr{s: string(v)}
}

func (o optStr) String() string {
	if o.null {
		return "NULL"
	}
	return fmt.Sprintf("%q", o.s)
}

type apRequest struct {
	apRow
	id                string
	exec, system, res string
	proposed          optSum
	sender            optStr
	entryHash         string
}

type apDecision struct {
	apRow
	id               string
	action           string // approve, reject or entry.ActionApprovalExpired
	approver, sender optStr
	auto             bool
	requestHash      optStr
}

type apWrite struct {
	apRow
	id                string
	exec, system, res string
	proposed          optSum
	failed            bool
}

// policyAt is a policy entry: the policies in force in its chain after seq.
type policyAt struct {
	seq      int64
	policies []approvalpolicy.Policy // none when its JSON does not parse
}

// pendingWrite is a write without approval id whose coverage is not known
// yet.
type pendingWrite struct {
	seq               int64
	system, res, tool string
}

// pendingWriteCost is what one pending write costs the budget: a seq
// and three string headers.
const pendingWriteCost = 8 + 3*16

// internCost is what a distinct string of the pending writes costs the
// budget beyond its bytes: its map entry and headers.
const internCost = 64

// intern returns b as a string, one copy per distinct value of the file.
func (fa *fileApprovals) intern(b []byte) string {
	if s, ok := fa.strs[string(b)]; ok {
		return s
	}
	if fa.strs == nil {
		fa.strs = map[string]string{}
	}
	s := string(b)
	fa.strs[s] = s
	return s
}

// fileApprovals is what one file keeps for the approval checks.
type fileApprovals struct {
	requests  []apRequest
	decisions []apDecision
	writes    []apWrite
	policies  []policyAt
	pending   []pendingWrite
	strs      map[string]string // the pending writes' distinct strings
	// overflow: the budget ran out; the file keeps no pending write and is
	// read again if policies are in force at its start.
	overflow bool
	// The coverage of a write after a policy entry of the file is checked
	// at once while the rows come in ascending seq.
	cur     *policyAt
	lastSeq int64
	ordered bool
}

// approvalRow looks at row i of res.chainID for the approval checks: only
// writes and the action types of the service's entries are looked at
// further, and only their attributes are parsed that hold an approval id.
func (r *fileReader) approvalRow(res *fileResult, i int) {
	cols := &r.cols
	at := cols[colActionType].value(i)
	seq := cols[colSeq].ints[i]
	fa := res.ap
	if fa == nil {
		fa = &fileApprovals{ordered: true, lastSeq: seq - 1}
		res.ap = fa
	}
	if seq <= fa.lastSeq {
		fa.ordered = false
	}
	fa.lastSeq = seq
	if len(at) < len(actionWrite) {
		return
	}
	row := func() apRow {
		return apRow{file: res.key, chain: res.chainID, seq: seq, tun: cols[colTimeUnixNano].ints[i]}
	}
	attrs := cols[colAttributes].value(i)
	switch string(at) {
	case actionWrite:
		var m map[string]json.RawMessage
		if bytes.Contains(attrs, quotedWriteID) {
			m = parseAttributes(attrs)
		}
		raw, ok := m[entry.KeyApprovalID]
		if !ok {
			r.coverage(res, fa, i, seq, attrs)
			return
		}
		if r.apKnown == nil {
			result := cols[colResult].value(i)
			fa.writes = append(fa.writes, apWrite{
				apRow: row(), id: attrText(raw),
				exec: string(cols[colExecutionID].value(i)), system: string(cols[colTargetSystem].value(i)),
				res: string(cols[colTargetResource].value(i)), proposed: sumOf(cols[colProposedValue].value(i)),
				failed: string(cols[colStatusCode].value(i)) == "Error" || bytes.HasPrefix(result, []byte("error")),
			})
		}
	case entry.ActionApprovalPolicy:
		ps, err := approvalpolicy.Parse(string(cols[colProposedValue].value(i)))
		if err != nil {
			ps = nil
		}
		fa.policies = append(fa.policies, policyAt{seq: seq, policies: ps})
		if fa.ordered {
			fa.cur = &fa.policies[len(fa.policies)-1]
		}
	case actionRequest, actionApprove, actionReject, entry.ActionApprovalExpired:
		if r.apKnown != nil || !bytes.Contains(attrs, quotedServiceID) || r.forgedApproval(i) {
			return
		}
		m := parseAttributes(attrs)
		raw, ok := m[entry.AttrApprovalID]
		if !ok {
			return
		}
		id := attrText(raw)
		if string(at) == actionRequest {
			fa.requests = append(fa.requests, apRequest{
				apRow: row(), id: id,
				exec: string(cols[colExecutionID].value(i)), system: string(cols[colTargetSystem].value(i)),
				res: string(cols[colTargetResource].value(i)), proposed: sumOf(cols[colProposedValue].value(i)),
				sender: strOf(r.sender(i)), entryHash: string(cols[colEntryHash].value(i)),
			})
			return
		}
		d := apDecision{apRow: row(), id: id, action: string(at),
			approver: strOf(cols[colApprover].value(i)), sender: strOf(r.sender(i)), requestHash: optStr{null: true}}
		if v, ok := m[entry.AttrApprovalRequestHash]; ok {
			d.requestHash = optStr{s: attrText(v)}
		}
		if v, ok := m[entry.AttrApprovalAuto]; ok {
			d.auto = attrText(v) == "true"
		}
		fa.decisions = append(fa.decisions, d)
	}
}

// coverage checks a write without approval id against the policies in
// force, when they are known, or keeps it for later.
func (r *fileReader) coverage(res *fileResult, fa *fileApprovals, i int, seq int64, attrs []byte) {
	cols := &r.cols
	system, resource := cols[colTargetSystem].value(i), cols[colTargetResource].value(i)
	tool := system
	if bytes.Contains(attrs, quotedToolName) {
		if raw, ok := parseAttributes(attrs)[entry.KeyToolName]; ok {
			tool = []byte(attrText(raw))
		}
	}
	var in *policyAt
	switch {
	case r.apKnown != nil:
		in = inForce(r.apKnown[res.chainID], seq)
	case fa.cur != nil && fa.ordered:
		in = fa.cur
	default:
		if fa.overflow {
			return
		}
		// The file's targets repeat: each distinct value is kept once
		// (the lookups by string(b) do not allocate).
		n := int64(pendingWriteCost)
		for _, b := range [...][]byte{system, resource, tool} {
			if _, ok := fa.strs[string(b)]; !ok {
				n += int64(len(b)) + internCost
			}
		}
		if r.apc.pending.Add(n) > pendingBudget {
			r.apc.pending.Add(-n)
			fa.overflow, fa.pending, fa.strs = true, nil, nil
			return
		}
		fa.pending = append(fa.pending, pendingWrite{seq: seq, system: fa.intern(system), res: fa.intern(resource), tool: fa.intern(tool)})
		return
	}
	if in == nil {
		return
	}
	if p, ok := approvalpolicy.First(in.policies, string(system), string(resource), string(tool)); ok {
		res.add(seq, UnapprovedWrite, "%s", unapprovedDetail(p.Name, in.seq))
	}
}

func unapprovedDetail(policy string, policySeq int64) string {
	return fmt.Sprintf("a write without %s covered by policy %q (in force since seq %d)", entry.KeyApprovalID, policy, policySeq)
}

// forgedApproval reports whether row i's validation flags one of the
// service's attributes reserved_key: an agent set it, and the row is not
// the service's.
func (r *fileReader) forgedApproval(i int) bool {
	v := r.cols[colValidation].value(i)
	if !bytes.Contains(v, reservedKey) {
		return false
	}
	var problems []entry.Problem
	if json.Unmarshal(v, &problems) != nil {
		return false
	}
	for _, p := range problems {
		if p.Kind == "reserved_key" && strings.HasPrefix(p.Field, entry.AttrApprovalPrefix) {
			return true
		}
	}
	return false
}

// parseAttributes parses an attributes column value, a JSON object; nil
// when it is not one.
func parseAttributes(v []byte) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(v, &m) != nil {
		return nil
	}
	return m
}

// attrText is an attribute's value as DuckDB's json_extract_string gives
// it: a string's text, any other value's JSON.
func attrText(raw json.RawMessage) string {
	var s string
	if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// inForce returns the latest policy entry of ps (sorted by seq) with a seq
// lower than seq, nil when there is none.
func inForce(ps []policyAt, seq int64) *policyAt {
	i, _ := slices.BinarySearchFunc(ps, seq, func(p policyAt, s int64) int { return cmp.Compare(p.seq, s) })
	if i == 0 {
		return nil
	}
	return &ps[i-1]
}

// checkApprovals makes the approval checks over the files' approval rows
// and adds the violations to rep. Files that ran out of the pending budget
// are read again from src when policies are in force at their start.
func checkApprovals(ctx context.Context, src store.Reader, results []*fileResult, rep *Report) error {
	var (
		requests  = map[string]*apRequest{}
		decisions = map[string]*apDecision{}
		writes    []*apWrite
		policies  = map[string][]policyAt{}
		found     bool
	)
	for _, f := range results {
		if f == nil || f.ap == nil {
			continue
		}
		found = true
		for i := range f.ap.requests {
			q := &f.ap.requests[i]
			if old, ok := requests[q.id]; !ok || q.before(&old.apRow) {
				requests[q.id] = q
			}
		}
		for i := range f.ap.decisions {
			d := &f.ap.decisions[i]
			if old, ok := decisions[d.id]; !ok || d.before(&old.apRow) {
				decisions[d.id] = d
			}
		}
		for i := range f.ap.writes {
			writes = append(writes, &f.ap.writes[i])
		}
		policies[f.chainID] = append(policies[f.chainID], f.ap.policies...)
	}
	if !found {
		return nil
	}
	for _, ps := range policies {
		slices.SortStableFunc(ps, func(a, b policyAt) int { return cmp.Compare(a.seq, b.seq) })
	}
	add := func(row *apRow, kind Kind, format string, args ...any) {
		rep.Violations = append(rep.Violations, Violation{File: row.file, ChainID: row.chain, Seq: row.seq, Kind: kind, Detail: fmt.Sprintf(format, args...)})
	}

	// self_approved, at every decision of a person.
	for _, f := range results {
		if f == nil || f.ap == nil {
			continue
		}
		for i := range f.ap.decisions {
			d := &f.ap.decisions[i]
			q, ok := requests[d.id]
			if !ok || d.auto || d.action == entry.ActionApprovalExpired || q.sender.null {
				continue
			}
			switch {
			case !d.approver.null && d.approver.s == q.sender.s:
				add(&d.apRow, SelfApproved, "%s of approval %q by %s, who requested it (chain %q seq %d)", d.action, d.id, d.approver, q.chain, q.seq)
			case !d.sender.null && d.sender.s == q.sender.s:
				add(&d.apRow, SelfApproved, "%s of approval %q sent by %s, who requested it (chain %q seq %d)", d.action, d.id, d.sender, q.chain, q.seq)
			}
		}
	}

	// approval_mismatch and approval_reused, at the writes.
	byID := map[string][]*apWrite{}
	for _, w := range writes {
		byID[w.id] = append(byID[w.id], w)
		if why := mismatch(w, requests[w.id], decisions[w.id]); why != "" {
			add(&w.apRow, ApprovalMismatch, "approval %q: %s", w.id, why)
		}
	}
	for id, ws := range byID {
		reused(id, ws, add)
	}

	// unapproved_write: the pending writes, and the files read again.
	covered := map[apRow]bool{}
	for _, f := range results {
		if f == nil || f.ap == nil {
			continue
		}
		ps := policies[f.chainID]
		for _, w := range f.ap.pending {
			in := inForce(ps, w.seq)
			if in == nil {
				continue
			}
			if p, ok := approvalpolicy.First(in.policies, w.system, w.res, w.tool); ok {
				add(&apRow{file: f.key, chain: f.chainID, seq: w.seq}, UnapprovedWrite, "%s", unapprovedDetail(p.Name, in.seq))
			}
		}
		if f.ap.overflow && inForce(ps, f.lastSeq) != nil {
			for _, v := range f.violations {
				if v.Kind == UnapprovedWrite {
					covered[apRow{file: v.File, chain: v.ChainID, seq: v.Seq}] = true
				}
			}
			data, err := src.Get(ctx, f.key)
			if err != nil {
				return err
			}
			r := getFileReader()
			r.apKnown = policies
			again := r.read(f.key, data)
			r.apKnown = nil
			putFileReader(r)
			for _, v := range again.violations {
				if k := (apRow{file: v.File, chain: v.ChainID, seq: v.Seq}); v.Kind == UnapprovedWrite && !covered[k] {
					covered[k] = true
					rep.Violations = append(rep.Violations, v)
				}
			}
		}
	}
	return nil
}

// mismatch says how write w differs from what its approval allowed, ""
// when it does not.
func mismatch(w *apWrite, q *apRequest, d *apDecision) string {
	if q == nil {
		return "names no request in the trail"
	}
	var why []string
	switch {
	case d == nil:
		why = append(why, "not decided (pending)")
	case d.action == actionReject:
		why = append(why, fmt.Sprintf("rejected (chain %q seq %d)", d.chain, d.seq))
	case d.action == entry.ActionApprovalExpired:
		why = append(why, fmt.Sprintf("expired (chain %q seq %d)", d.chain, d.seq))
	}
	var fields []string
	if w.exec != q.exec {
		fields = append(fields, "execution_id")
	}
	if w.system != q.system {
		fields = append(fields, "target_system")
	}
	if w.res != q.res {
		fields = append(fields, "target_resource")
	}
	if w.proposed != q.proposed {
		fields = append(fields, "proposed_value")
	}
	if len(fields) > 0 {
		why = append(why, fmt.Sprintf("%s differ from the request's (chain %q seq %d)", strings.Join(fields, ", "), q.chain, q.seq))
	}
	if d != nil {
		if w.recordedBefore(&d.apRow) {
			why = append(why, fmt.Sprintf("recorded before its decision (chain %q seq %d)", d.chain, d.seq))
		}
		if d.requestHash.null || d.requestHash.s != q.entryHash {
			why = append(why, fmt.Sprintf("the decision's request_hash %s is not the request's entry_hash %q", d.requestHash, q.entryHash))
		}
	}
	return strings.Join(why, "; ")
}

// reused reports each write of ws (all naming approval id) recorded after
// another that did not fail: same chain, lower seq; else an earlier
// time_unix_nano.
func reused(id string, ws []*apWrite, add func(*apRow, Kind, string, ...any)) {
	minSeq := map[string]*apWrite{} // per chain, the ok write of lowest seq
	// The two earliest ok writes of distinct chains.
	var e1, e2 *apWrite
	for _, w := range ws {
		if w.failed {
			continue
		}
		if m, ok := minSeq[w.chain]; !ok || w.seq < m.seq {
			minSeq[w.chain] = w
		}
		switch {
		case e1 == nil || w.tun < e1.tun:
			if e1 != nil && e1.chain != w.chain {
				e2 = e1
			}
			e1 = w
		case w.chain != e1.chain && (e2 == nil || w.tun < e2.tun):
			e2 = w
		}
	}
	for _, w := range ws {
		var by *apWrite
		if m, ok := minSeq[w.chain]; ok && m.seq < w.seq {
			by = m
		} else if e := e1; e != nil && e.chain != w.chain && e.tun < w.tun {
			by = e
		} else if e := e2; e != nil && e.chain != w.chain && e.tun < w.tun {
			by = e
		}
		if by != nil {
			add(&w.apRow, ApprovalReused, "approval %q already used by the write at chain %q seq %d", id, by.chain, by.seq)
		}
	}
}
