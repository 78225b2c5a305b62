package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The agents of e2e/agents are Node.js scripts. Their packages are
// installed with `npm ci` from the committed package-lock.json, once per
// lock file, into a cache directory outside the checkout:
// $AGENTAUDIT_NODE_CACHE, else <user cache dir>/agentaudit/e2e-agents,
// one subdirectory per hash of package.json, package-lock.json and Node's
// major version. A later test binary (or CI run on the same machine) finds
// it installed and skips npm.
//
// The agents also depend on the repository's own JavaScript helper,
// @agentaudit/approvals, as "file:../../clients/js": the install copies
// it (localPackageFiles, also hashed) to the same place relative to the
// agents' package.json, and npm links it into node_modules there.

const agentsSrc = "agents" // relative to the package directory, where go test runs

// localPackageFiles are the files of clients/js an install copies, by
// their path relative to e2e/.
var localPackageFiles = []string{
	"../clients/js/package.json", "../clients/js/index.mjs", "../clients/js/index.d.ts", "../clients/js/README.md",
}

// minNodeMajor is the oldest Node.js the pinned packages support
// (@langchain/core: node >=20).
const minNodeMajor = 20

var (
	nodeOnce    sync.Once
	nodeModules string // the installed node_modules
	nodeBin     string
	nodeErr     error
	nodeTook    time.Duration
)

// nodeUnavailable skips the test, or fails it under CI=true: CI must
// never pass by skipping.
func nodeUnavailable(t *testing.T, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("the framework agents need Node.js %d+ and npm (under CI=true this fails rather than skips): %v", minNodeMajor, err)
	}
	t.Skipf("the framework agents need Node.js %d+ and npm: %v", minNodeMajor, err)
}

// agentScripts returns a directory holding the agents' scripts beside a
// node_modules link to the installed packages, installing them first if
// needed (once per test binary).
func agentScripts(t *testing.T) string {
	t.Helper()
	nodeOnce.Do(func() {
		start := time.Now()
		nodeBin, nodeModules, nodeErr = installAgents()
		nodeTook = time.Since(start)
	})
	if nodeErr != nil {
		nodeUnavailable(t, nodeErr)
	}
	t.Logf("agent packages in %s (ready in %v)", nodeModules, nodeTook.Round(time.Millisecond))
	dir := t.TempDir()
	entries, err := os.ReadDir(agentsSrc)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() && (strings.HasSuffix(e.Name(), ".mjs") || e.Name() == "package.json") {
			b, err := os.ReadFile(filepath.Join(agentsSrc, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Node resolves a package from the importing file's directory upwards,
	// through the link to its real path.
	if err := os.Symlink(nodeModules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	return dir
}

var nodeVersionRE = regexp.MustCompile(`^v(\d+)\.`)

// installAgents finds node and npm and runs npm ci into the cache unless
// an earlier run did. It returns node and the node_modules directory.
func installAgents() (node, modules string, err error) {
	if node, err = exec.LookPath("node"); err != nil {
		return "", "", err
	}
	modules, err = installAgentsWith(node)
	return node, modules, err
}

// installAgentsWith checks node's version and installs the agents'
// packages for it, unless installed already; it returns node_modules.
func installAgentsWith(node string) (string, error) {
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("node --version: %w", err)
	}
	m := nodeVersionRE.FindStringSubmatch(string(out))
	if m == nil {
		return "", fmt.Errorf("node --version printed %q", out)
	}
	major, _ := strconv.Atoi(m[1])
	if major < minNodeMajor {
		return "", fmt.Errorf("node is %s", bytes.TrimSpace(out))
	}

	h := sha256.New()
	for _, name := range append([]string{filepath.Join(agentsSrc, "package.json"), filepath.Join(agentsSrc, "package-lock.json")}, localPackageFiles...) {
		b, err := os.ReadFile(name)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	fmt.Fprintf(h, "node %d\n", major)
	key := hex.EncodeToString(h.Sum(nil))[:16]

	root := os.Getenv("AGENTAUDIT_NODE_CACHE")
	if root == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		root = filepath.Join(cache, "agentaudit", "e2e-agents")
	}
	// The install mirrors the checkout: <dir>/e2e/agents beside
	// <dir>/clients/js.
	final := filepath.Join(root, key)
	modules := filepath.Join(final, "e2e", "agents", "node_modules")
	done := filepath.Join(modules, ".agentaudit-installed")
	if _, err := os.Stat(done); err == nil {
		return modules, nil
	}

	// Install into a fresh directory and rename it into place: a test
	// binary that dies half-way leaves no half-installed cache, and two
	// that install at once both end with a complete one.
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(root, key+".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	agentsDir := filepath.Join(tmp, "e2e", "agents")
	copies := map[string]string{
		filepath.Join(agentsSrc, "package.json"):      filepath.Join(agentsDir, "package.json"),
		filepath.Join(agentsSrc, "package-lock.json"): filepath.Join(agentsDir, "package-lock.json"),
	}
	for _, name := range localPackageFiles {
		copies[name] = filepath.Join(tmp, "e2e", name)
	}
	for from, to := range copies {
		b, err := os.ReadFile(from)
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			return "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// No package of the lock file has an install script; --ignore-scripts
	// keeps it that way.
	cmd := exec.CommandContext(ctx, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error")
	cmd.Dir = agentsDir
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("npm ci in %s: %w\n%s", tmp, err, logs.String())
	}
	if err := os.WriteFile(filepath.Join(agentsDir, "node_modules", ".agentaudit-installed"), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another test binary got there first.
		if _, statErr := os.Stat(done); statErr != nil {
			return "", fmt.Errorf("moving the install into place: %w", errors.Join(err, statErr))
		}
	}
	return modules, nil
}

// runAgent runs the agent script in dir with node, sending OTLP/HTTP to
// endpoint, and fails the test unless it exits 0 within two minutes. It
// returns the agent's output.
func runAgent(t *testing.T, dir, script, endpoint string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, script)
	cmd.Dir = dir
	// The agents' only OTel settings are the test's: none inherited.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "OTEL_EXPORTER_OTLP_ENDPOINT="+endpoint)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, out)
	}
	t.Logf("node %s: %v: %s", script, time.Since(start).Round(time.Millisecond), bytes.TrimSpace(out))
	return string(out)
}

// agentModules are the agents' shared modules (the tracing setup and the
// run they all do) and the agents tested elsewhere (approval.mjs, by
// approvals_test.go).
var agentModules = []string{"otel.mjs", "crm.mjs", "approval.mjs"}

// agentScriptNames lists the .mjs files under e2e/agents that are agents.
func agentScriptNames() ([]string, error) {
	var names []string
	err := filepath.WalkDir(agentsSrc, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "node_modules" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".mjs") && !slices.Contains(agentModules, d.Name()) {
			names = append(names, strings.TrimSuffix(d.Name(), ".mjs"))
		}
		return nil
	})
	return names, err
}

// TestFrameworkNodeMissing: without node on the PATH the install reports
// it (and agentScripts then skips, or fails under CI=true).
func TestFrameworkNodeMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, _, err := installAgents()
	require.ErrorIs(t, err, exec.ErrNotFound)
	require.ErrorContains(t, err, `"node"`)
}
