// Package metadata holds the component's type and stability, in the shape
// mdatagen generates (mdatagen is not reachable here, so it is hand-written).
package metadata // import "github.com/agentaudit/agentaudit/extension/intakeextension/internal/metadata"

import (
	"go.opentelemetry.io/collector/component"
)

var (
	Type      = component.MustNewType("agentaudit_intake")
	ScopeName = "github.com/agentaudit/agentaudit/extension/intakeextension"
)

const (
	ExtensionStability = component.StabilityLevelAlpha
)
