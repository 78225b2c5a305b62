package harness

// The coverage markers (docs/FORMAT.md, "Coverage"): every start of the
// collector writes a start marker into its chain, every clean shutdown a
// stop marker. Tests that mean the agents' entries leave them out; tests
// that read every row of a trail say which markers they expect, as
// "action_type: result".

import (
	"database/sql"
	"testing"

	"github.com/stretchr/testify/require"
)

// The markers' action types.
const (
	ActionRecorderStart = "agentaudit.recorder_start"
	ActionRecorderStop  = "agentaudit.recorder_stop"
)

// The markers as Marker shows them.
const (
	FirstStart            = ActionRecorderStart + ": first start"
	StartAfterCleanStop   = ActionRecorderStart + ": after a clean stop"
	StartAfterUncleanStop = ActionRecorderStart + ": no record of a clean stop"
	CleanStop             = ActionRecorderStop + ": clean stop"
)

// OneCleanRun is the markers of a chain one collector wrote, from its first
// start to a clean stop.
var OneCleanRun = []string{FirstStart, CleanStop}

// NoMarkers is an SQL condition on audit_entries that leaves the markers
// out: the entries the agents' spans became.
const NoMarkers = "action_type NOT IN ('" + ActionRecorderStart + "', '" + ActionRecorderStop + "')"

// IsMarker reports whether an entry of this action type is a marker.
func IsMarker(actionType string) bool {
	return actionType == ActionRecorderStart || actionType == ActionRecorderStop
}

// Marker shows a marker as "action_type: result".
func Marker(actionType, result string) string { return actionType + ": " + result }

// SplitMarkers returns rows without the markers, and the markers in row
// order as Marker shows them.
func SplitMarkers(rows []Row) (entries []Row, markers []string) {
	for _, r := range rows {
		if IsMarker(r.ActionType) {
			markers = append(markers, Marker(r.ActionType, r.Result))
			continue
		}
		entries = append(entries, r)
	}
	return entries, markers
}

// Runs is the markers of a chain that n collectors wrote one after the
// other with one spool, each stopping cleanly but those that were killed
// (killed[i] for the i-th run).
func Runs(killed ...bool) []string {
	var out []string
	for i, k := range killed {
		switch {
		case i == 0:
			out = append(out, FirstStart)
		case killed[i-1]:
			out = append(out, StartAfterUncleanStop)
		default:
			out = append(out, StartAfterCleanStop)
		}
		if !k {
			out = append(out, CleanStop)
		}
	}
	return out
}

// TrailMarkers returns the markers of the trail db's audit_entries view
// holds, in chain order, as Marker shows them.
func TrailMarkers(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT action_type, result FROM audit_entries WHERE NOT (` + NoMarkers + `) ORDER BY chain_id, seq`)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var action, result string
		require.NoError(t, rows.Scan(&action, &result))
		out = append(out, Marker(action, result))
	}
	require.NoError(t, rows.Err())
	return out
}
