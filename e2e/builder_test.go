package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/stretchr/testify/require"
)

// TestBuilderConfigBuilds proves that operators can build this distribution
// with the collector builder from builder-config.yaml, and that the binary it
// produces accepts the embedded default configuration.
func TestBuilderConfigBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a whole collector with ocb; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	cfg, err := os.ReadFile(filepath.Join(root, "builder-config.yaml"))
	require.NoError(t, err)

	// Build into a temporary directory, pointing the local module at this
	// checkout by absolute path.
	out := t.TempDir()
	text := strings.ReplaceAll(string(cfg), "output_path: ./_build", "output_path: "+out)
	text = strings.ReplaceAll(text, "path: ./", "path: "+root)
	require.Contains(t, text, "output_path: "+out, "builder-config.yaml no longer has the expected output_path")
	cfgPath := filepath.Join(t.TempDir(), "builder-config.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(text), 0o600))

	build := exec.CommandContext(ctx, "go", "run", "go.opentelemetry.io/collector/cmd/builder@v0.165.0", "--config", cfgPath)
	build.Dir = root
	logs, err := build.CombinedOutput()
	require.NoError(t, err, "ocb failed:\n%s", logs)

	bin := filepath.Join(out, "agentaudit")
	for _, cfg := range []string{"agentaudit.yaml", "agentaudit-split.yaml", "agentaudit-frameworks.yaml", "agentaudit-approvals.yaml"} {
		validate := exec.CommandContext(ctx, bin, "validate", "--config", filepath.Join(root, "testdata", cfg))
		logs, err = validate.CombinedOutput()
		require.NoError(t, err, "the ocb-built collector rejects testdata/%s:\n%s", cfg, logs)
	}

	comps := exec.CommandContext(ctx, bin, "components")
	logs, err = comps.CombinedOutput()
	require.NoError(t, err, "%s", logs)
	require.Contains(t, string(logs), "agentaudit", "the ocb-built collector lists our components")
	require.Contains(t, string(logs), "agentaudit_split", "the ocb-built collector lists the connector")
	ours, err := exec.CommandContext(ctx, harness.CollectorBin(), "components").CombinedOutput()
	require.NoError(t, err, "%s", ours)
	require.Equal(t, componentNames(string(ours)), componentNames(string(logs)),
		"builder-config.yaml lists the components of components.go")
	require.Contains(t, componentNames(string(logs)), "extensions/bearertokenauth")
	require.Contains(t, componentNames(string(logs)), "extensions/oidc")
}

// componentNames reads the output of the collector's components command:
// each component as kind/name ("extensions/zpages"), sorted.
func componentNames(out string) []string {
	var names []string
	kind := ""
	for _, line := range strings.Split(out, "\n") {
		if line != "" && line[0] != ' ' && strings.HasSuffix(line, ":") {
			kind = strings.TrimSuffix(line, ":")
		}
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "- name: "); ok && kind != "buildinfo" {
			names = append(names, kind+"/"+name)
		}
	}
	slices.Sort(names)
	return names
}

// TestExampleConfigsValidate: every configuration in testdata, the
// embedded default and the connector's example, is one the collector
// accepts.
func TestExampleConfigsValidate(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "*.yaml"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 2)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, err := exec.Command(harness.CollectorBin(), "validate", "--config", f).CombinedOutput()
			require.NoError(t, err, "%s:\n%s", f, out)
		})
	}
}

// TestConnectorMiswiredRefused: a connector whose pipelines do not match
// the service's is refused before the collector starts, naming it.
func TestConnectorMiswiredRefused(t *testing.T) {
	cfg, err := os.ReadFile(filepath.Join("..", "testdata", "agentaudit-split.yaml"))
	require.NoError(t, err)
	bad := strings.Replace(string(cfg), "monitoring_pipelines: [traces/monitoring]", "monitoring_pipelines: [traces/other]", 1)
	require.NotEqual(t, string(cfg), bad)
	path := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(path, []byte(bad), 0o600))
	out, err := exec.Command(harness.CollectorBin(), "validate", "--config", path).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), `connectors::agentaudit_split: "monitoring_pipelines" lists "traces/other", which does not have this connector among its receivers`)
	require.Contains(t, string(out), `pipelines traces/monitoring receive from this connector but are in neither "audit_pipelines" nor "monitoring_pipelines"`)
}
