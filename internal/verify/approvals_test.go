package verify

import (
	"context"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/verify/approvaltest"
)

var approvalKinds = []Kind{SelfApproved, ApprovalMismatch, ApprovalReused, UnapprovedWrite}

// writeApprovalTrail writes approvaltest's trail: the service's chain in
// two files, the other chain in one.
func writeApprovalTrail(t *testing.T) (string, approvaltest.Trail) {
	tr := approvaltest.Build()
	dir := t.TempDir()
	svc := tr.Chains[approvaltest.Service]
	writeBatch(t, dir, svc[:tr.Split])
	writeBatch(t, dir, svc[tr.Split:])
	writeBatch(t, dir, tr.Chains[approvaltest.Other])
	return dir, tr
}

// TestApprovals: every case of docs/APPROVALS.md's checks, and nothing
// else: a clean approved write (in the same chain and in another), a
// failed attempt and its retry, an auto policy's approval, a write before
// any policy or on a target no policy covers, and an agent's forged
// service entries give no violation; each case of approvaltest.Want does,
// with the field or reason in its detail.
func TestApprovals(t *testing.T) {
	dir, tr := writeApprovalTrail(t)
	for _, budget := range []int64{pendingBudget, 0} {
		t.Run("", func(t *testing.T) {
			// With no budget, the second file keeps no pending write and
			// is read again once the first file's policies are known.
			old := pendingBudget
			pendingBudget = budget
			t.Cleanup(func() { pendingBudget = old })
			rep, err := Verify(context.Background(), store.Dir(dir), Options{Workers: 2})
			require.NoError(t, err)
			var got []Violation
			for _, v := range rep.Violations {
				require.Contains(t, approvalKinds, v.Kind, "%s", v)
				got = append(got, v)
			}
			require.Len(t, got, len(tr.Want), "got:\n%s", joinLines(got))
			for _, w := range tr.Want {
				i := slices.IndexFunc(got, func(v Violation) bool {
					return v.ChainID == w.ChainID && v.Seq == w.Seq && string(v.Kind) == w.Kind
				})
				if assert.GreaterOrEqual(t, i, 0, "want %+v; got:\n%s", w, joinLines(got)) {
					assert.Contains(t, got[i].Detail, w.Detail, "%+v", w)
				}
			}
			assert.False(t, rep.Intact)
		})
	}
}

// TestApprovalsOneFileEach: the same verdicts with every entry in a file
// of its own, so that no coverage is checked inside a file.
func TestApprovalsOneFileEach(t *testing.T) {
	tr := approvaltest.Build()
	dir := t.TempDir()
	for _, es := range tr.Chains {
		for i := range es {
			writeBatch(t, dir, es[i:i+1])
		}
	}
	rep, err := Verify(context.Background(), store.Dir(dir), Options{Workers: 4})
	require.NoError(t, err)
	require.Len(t, rep.Violations, len(tr.Want), "got:\n%s", joinLines(rep.Violations))
	for _, w := range tr.Want {
		assert.True(t, slices.ContainsFunc(rep.Violations, func(v Violation) bool {
			return v.ChainID == w.ChainID && v.Seq == w.Seq && string(v.Kind) == w.Kind
		}), "want %+v", w)
	}
}

// TestApprovalsCheckFileAlone: CheckFile, which sees one file, makes no
// approval check (they need the whole trail).
func TestApprovalsCheckFileAlone(t *testing.T) {
	dir, _ := writeApprovalTrail(t)
	keys, err := store.Dir(dir).Batches(context.Background())
	require.NoError(t, err)
	for _, k := range keys {
		data, err := store.Dir(dir).Get(context.Background(), k)
		require.NoError(t, err)
		assert.Empty(t, CheckFile(k, data), k)
	}
}
