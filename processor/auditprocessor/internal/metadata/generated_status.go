// Package metadata holds the component's type and stability, in the shape
// mdatagen generates (mdatagen is not reachable here, so it is hand-written).
package metadata // import "github.com/agentaudit/agentaudit/processor/auditprocessor/internal/metadata"

import (
	"go.opentelemetry.io/collector/component"
)

var (
	Type      = component.MustNewType("agentaudit")
	ScopeName = "github.com/agentaudit/agentaudit/processor/auditprocessor"
)

const (
	TracesStability = component.StabilityLevelAlpha
)
