# Convenience targets. CI runs .ci/run, which runs `go vet` and exactly the
# README's test command.

.PHONY: test lint fmt bench build

test:
	go test -count=1 -timeout 30m ./...

lint:
	gofmt -l $$(git ls-files '*.go') | (! grep .)
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@latest ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# Microbenchmarks (ratios side by side; see docs/PERFORMANCE.md).
bench:
	go test -run '^$$' -bench . -benchmem -count 5 \
		./processor/auditprocessor/ ./connector/auditsplitconnector/ ./internal/auditspan/ ./internal/chain/ ./internal/parquetfile/ \
		./internal/wal/ ./internal/merkle/ ./internal/verify/

build:
	go build -o agentaudit .
	go build -o auditctl ./cmd/auditctl
