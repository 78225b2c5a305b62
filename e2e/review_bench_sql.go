//go:build ignore

// review_bench_sql is the plain DuckDB side of BenchmarkReviewVsSQL
// (review_bench_test.go): the hand-written SQL a reviewer would run over
// every file of a trail, with nothing skipped and nothing verified, as a
// process of its own like auditctl. It prints one tab-separated line per
// row.
//
//	go build -o reviewsql review_bench_sql.go
//	reviewsql runs RUNS_SQL_FILE DIR SINCE_NS UNTIL_NS   # runs.sql over the runs with an entry in [SINCE, UNTIL)
//	reviewsql show DIR EXECUTION_ID                      # every entry of one run, in true order
package main

import (
	"bufio"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"strings"

	_ "github.com/duckdb/duckdb-go/v2"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "reviewsql:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // the view and the query on one connection
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	switch {
	case len(args) == 5 && args[0] == "runs":
		runsSQL, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		files := quote(strings.TrimSuffix(args[2], "/") + "/**/*.parquet")
		since, err1 := strconv.ParseInt(args[3], 10, 64)
		until, err2 := strconv.ParseInt(args[4], 10, 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("SINCE_NS and UNTIL_NS: want integers")
		}
		view := fmt.Sprintf(`CREATE TEMP VIEW audit_entries AS
SELECT * FROM read_parquet(%[1]s, union_by_name = true)
WHERE execution_id IN (
  SELECT execution_id FROM read_parquet(%[1]s, union_by_name = true)
  WHERE time_unix_nano >= %[2]d AND time_unix_nano < %[3]d)`, files, since, until)
		if _, err := db.Exec(view); err != nil {
			return err
		}
		return print(db, "SELECT * FROM ("+string(runsSQL)+") AS runs ORDER BY start_ns DESC, execution_id")
	case len(args) == 3 && args[0] == "show":
		files := quote(strings.TrimSuffix(args[1], "/") + "/**/*.parquet")
		return print(db, "SELECT * FROM read_parquet("+files+") WHERE execution_id = "+quote(args[2])+
			" ORDER BY time_unix_nano, chain_id, seq")
	}
	return fmt.Errorf("usage: reviewsql runs RUNS_SQL_FILE DIR SINCE_NS UNTIL_NS | reviewsql show DIR EXECUTION_ID")
}

// print writes every row of q, its values tab-separated.
func print(db *sql.DB, q string) error {
	rows, err := db.Query(q)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	w := bufio.NewWriter(os.Stdout)
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for i, v := range vals {
			if i > 0 {
				w.WriteByte('\t')
			}
			switch v := v.(type) {
			case nil:
				w.WriteString("NULL")
			case string:
				q := strconv.Quote(v) // a value's tabs and newlines escaped
				w.WriteString(q[1 : len(q)-1])
			default:
				fmt.Fprint(w, v)
			}
		}
		w.WriteByte('\n')
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return w.Flush()
}
