// Command agentaudit is the agentaudit distribution of the OpenTelemetry
// Collector: a flight recorder for AI agents.
//
// With no --config flag it runs the embedded default (testdata/agentaudit.yaml):
// OTLP on 127.0.0.1:4317 (gRPC) and 127.0.0.1:4318 (HTTP), an audit
// pipeline writing a hash-chained Parquet trail to ./audit-data, and a
// monitoring pipeline that strips the audit payload before the debug exporter.
package main

import (
	_ "embed"
	"log"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/httpprovider"
	"go.opentelemetry.io/collector/confmap/provider/httpsprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/otelcol"
)

// defaultConfig is used when no --config flag is given; any --config flag
// replaces it.
//
//go:embed testdata/agentaudit.yaml
var defaultConfig string

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	info := component.BuildInfo{
		Command:     "agentaudit",
		Description: "agentaudit: a flight recorder for AI agents (OpenTelemetry Collector distribution)",
		Version:     version,
	}
	set := otelcol.CollectorSettings{
		BuildInfo: info,
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				URIs: []string{"yaml:" + defaultConfig},
				ProviderFactories: []confmap.ProviderFactory{
					envprovider.NewFactory(),
					fileprovider.NewFactory(),
					httpprovider.NewFactory(),
					httpsprovider.NewFactory(),
					yamlprovider.NewFactory(),
				},
			},
		},
	}
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		log.Fatalf("agentaudit: %v", err)
	}
}
