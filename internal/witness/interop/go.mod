// A module of its own so that transparency-dev's witness, and what it
// requires (newer formats and merkle, its storage back ends), stay out of
// the collector's and auditctl's build. See doc.go.
module github.com/agentaudit/agentaudit/internal/witness/interop

go 1.26.0

replace github.com/agentaudit/agentaudit => ../../..

require (
	github.com/agentaudit/agentaudit v0.0.0-00010101000000-000000000000
	github.com/stretchr/testify v1.12.1
	github.com/transparency-dev/formats v0.1.2-0.20260710124811-af9e607161b6
	github.com/transparency-dev/witness v0.0.0-20260720115447-2e1c6971d19e
	golang.org/x/mod v0.41.0
)

require (
	filippo.io/mldsa v0.0.0-20260215214346-43d0283efc3e // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/go-logr/logr v1.4.4 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/transparency-dev/merkle v0.0.3-0.20260707140218-77df88e508fa // indirect
	go.opentelemetry.io/auto/sdk v1.2.1 // indirect
	go.opentelemetry.io/otel v1.47.0 // indirect
	go.opentelemetry.io/otel/log v1.47.0 // indirect
	go.opentelemetry.io/otel/metric v1.47.0 // indirect
	go.opentelemetry.io/otel/trace v1.47.0 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	k8s.io/klog/v2 v2.140.0 // indirect
)
