// Package trailcache finds the batch files of a trail that can hold the
// rows a query asks for, and brings them local, so that a query engine reads
// a few files of a large trail instead of all of them.
//
// A trail is a directory or s3://bucket/prefix laid out as docs/FORMAT.md
// "Files" says. Files reads every batch file's footer: the agentaudit facts
// (internal/parquetfile.ReadFooter), the row group statistics of
// time_unix_nano, end_time_unix_nano and execution_id, and the execution_id
// bloom filters, looking columns up by name. It reads only each file's
// tail (from S3, one range request), and keeps what it read in one footer
// index per trail in the cache directory (see indexMagic for the layout),
// keyed by file and checked against the listing's size and ETag (S3) or
// modification time (directory), so that a second run over an unchanged
// trail lists it and reads one file. Select keeps the files whose
// statistics and bloom filters admit a matching row, and Local downloads
// them from S3 into the cache (see s3Source for the layout).
//
// Only a verifier checks that a file's statistics and bloom filters are
// true to its rows: Select trusts them, as every Parquet reader does.
//
// The package imports neither a query engine nor OpenTelemetry.
package trailcache
