// Package parquetfile holds the Parquet layout of a sealed audit batch: the
// column schema, the footer metadata, and the functions that write and read
// one batch file.
//
// A batch file holds consecutive entries of one chain, one row per entry, in
// a single row group. Its footer carries key-value metadata (see the Key*
// constants) naming the chain and the seq range it covers, so that a
// verifier can stitch files together without decoding rows.
//
// The parquet-go API is pre-v1; it stays behind this package so that an
// upgrade touches one place.
package parquetfile // import "github.com/agentaudit/agentaudit/internal/parquetfile"
