package approval

// The runs' timelines a reviewer sees beside a request: the entries of
// each execution recorded since the collector started, the newest
// executions only, in memory.

import (
	"container/list"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/agentaudit/agentaudit/internal/entry"
)

const (
	maxTimelineExecutions = 1000 // executions kept, the least recently active dropped first
	maxTimelineEntries    = 200  // entries kept per execution, the oldest dropped first
	maxTimelineText       = 256  // bytes of a text field kept
)

// TimelineEntry is one entry of a run, as the inbox shows it.
type TimelineEntry struct {
	ChainID        string `json:"chain_id"`
	Seq            int64  `json:"seq"`
	Time           string `json:"time"`
	ActionType     string `json:"action_type"`
	TargetSystem   string `json:"target_system"`
	TargetResource string `json:"target_resource"`
	Result         string `json:"result"`
	StatusCode     string `json:"status_code"`
	AgentName      string `json:"agent_name,omitempty"`
	EntryHash      string `json:"entry_hash"`
}

type timelines struct {
	maxExec, maxEntries int

	mu    sync.Mutex
	byID  map[string]*list.Element // of *run
	order *list.List               // most recently active first
}

type run struct {
	id      string
	entries []TimelineEntry // a ring once full
	next    int             // where the next entry goes once full
}

func newTimelines(maxExec, maxEntries int) *timelines {
	return &timelines{maxExec: maxExec, maxEntries: maxEntries, byID: map[string]*list.Element{}, order: list.New()}
}

// add notes entries, in the order they were recorded.
func (t *timelines) add(entries []entry.Entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range entries {
		e := &entries[i]
		te := TimelineEntry{
			ChainID: e.ChainID, Seq: e.Seq, Time: time.Unix(0, e.TimeUnixNano).UTC().Format(timeFormat),
			ActionType: e.ActionType, TargetSystem: clip(e.TargetSystem), TargetResource: clip(e.TargetResource),
			Result: clip(e.Result), StatusCode: e.StatusCode, EntryHash: e.EntryHash,
		}
		if e.AgentName != nil {
			te.AgentName = clip(*e.AgentName)
		}
		el, ok := t.byID[e.ExecutionID]
		if ok {
			t.order.MoveToFront(el)
		} else {
			if t.order.Len() >= t.maxExec {
				last := t.order.Back()
				delete(t.byID, last.Value.(*run).id)
				t.order.Remove(last)
			}
			el = t.order.PushFront(&run{id: e.ExecutionID})
			t.byID[e.ExecutionID] = el
		}
		r := el.Value.(*run)
		if len(r.entries) < t.maxEntries {
			r.entries = append(r.entries, te)
			continue
		}
		r.entries[r.next] = te
		r.next = (r.next + 1) % t.maxEntries
	}
}

// get returns the entries of execution id, oldest first.
func (t *timelines) get(id string) []TimelineEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	el, ok := t.byID[id]
	if !ok {
		return []TimelineEntry{}
	}
	r := el.Value.(*run)
	out := make([]TimelineEntry, 0, len(r.entries))
	out = append(out, r.entries[r.next:]...)
	return append(out, r.entries[:r.next]...)
}

// clip keeps the first maxTimelineText bytes of s, cut at a character.
func clip(s string) string {
	if len(s) <= maxTimelineText {
		return s
	}
	n := maxTimelineText
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
