package harness

import (
	"time"

	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/trailtest"
)

// SampleEntry is a realistic entry of about 400 canonical bytes
// (trailtest.Entry).
func SampleEntry(i int64) entry.Entry { return trailtest.Entry(i) }

// Day is the UTC day of the hand-made trails' batch keys.
var Day = time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)

// Strp returns a pointer to s, for an entry's optional fields.
func Strp(s string) *string { return &s }
