package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	validate := exec.CommandContext(ctx, bin, "validate", "--config", filepath.Join(root, "testdata", "agentaudit.yaml"))
	logs, err = validate.CombinedOutput()
	require.NoError(t, err, "the ocb-built collector rejects testdata/agentaudit.yaml:\n%s", logs)

	comps := exec.CommandContext(ctx, bin, "components")
	logs, err = comps.CombinedOutput()
	require.NoError(t, err, "%s", logs)
	require.Contains(t, string(logs), "agentaudit", "the ocb-built collector lists our components")
	require.Contains(t, string(logs), "agentaudit_split", "the ocb-built collector lists the connector")
}
