package storetest

import (
	"testing"

	"github.com/agentaudit/agentaudit/internal/store"
)

func TestMemory(t *testing.T) {
	Run(t, func(t *testing.T) store.Store { return NewMemory() })
}
