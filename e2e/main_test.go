package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	cleanup, err := harness.BuildCollector()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	return m.Run()
}
