-- Verify an agentaudit trail, format version 2 or 1, or both (see
-- docs/FORMAT.md).
--
-- Plain DuckDB SQL (1.5 or later), one query, no agentaudit code involved.
--
-- Precondition: a view named audit_entries over the trail's Parquet files:
--
--   CREATE VIEW audit_entries AS
--   SELECT * FROM read_parquet('<dir>/**/*.parquet', hive_partitioning = true, union_by_name = true)
--   UNION ALL BY NAME SELECT NULL::BIGINT AS end_time_unix_nano, NULL::VARCHAR AS sender WHERE false;
--
-- union_by_name reads files of version 1 (without end_time_unix_nano and
-- sender) and of version 2 together, their rows NULL there; the empty
-- UNION adds the columns when no file has them (a trail of version 1
-- only). Only the 27 columns of FORMAT.md are used; a dt column may be
-- there or not.
--
-- Result: one row per violation, columns (chain_id, seq, violation, detail),
-- ordered by chain_id, seq, violation. No rows: the trail is intact.
--
--   hash_mismatch       entry_hash is not the SHA-256 of the row's canonical
--                       encoding (recomputed below), or a row of version 1
--                       has a sender, which no hash covers
--   broken_link         prev_hash is not the entry_hash of the row with the
--                       next lower seq of the chain, or at seq 0 not the
--                       genesis hash (64 '0's)
--   gap                 seq values missing before this row, or the chain's
--                       first row is not seq 0
--   duplicate           more than one row with this (chain_id, seq)
--   timestamp_mismatch  timestamp is not time_unix_nano rounded down to
--                       whole milliseconds, floor(time_unix_nano / 1000000),
--                       also for negative times (timestamp itself is not
--                       hashed)
--   recorded_loss       an entry the collector wrote to record entries it
--                       lost (action_type agentaudit.loss, which no span
--                       can produce): the operator accepted the loss of a
--                       corrupt write-ahead log, and the chain is knowingly
--                       incomplete here (README, "Recovery")
--
-- What no check here can see (FORMAT.md, "What verification proves"): rows
-- cut off the end of a chain, and a chain rewritten with every later hash
-- recomputed. Compare chain heads with a record kept elsewhere for those.
WITH
-- The canonical encoding, field by field in hash order (not column order):
-- NULL is '-', a string is its BYTE length (strlen, not length), ':' and its
-- bytes; integers are their decimal digits encoded as strings. A row whose
-- end_time_unix_nano is NULL is hashed as version 1: its tag, and no end
-- time nor sender field; any other row as version 2, with both.
entries AS (
    SELECT
        chain_id,
        seq,
        prev_hash,
        entry_hash,
        "timestamp",
        time_unix_nano,
        -- floor(time_unix_nano / 1000000): // truncates towards zero, so a
        -- negative remainder takes one more millisecond off. Never
        -- overflows: no bigger intermediate than time_unix_nano itself.
        time_unix_nano // 1000000 - CASE WHEN time_unix_nano % 1000000 < 0 THEN 1 ELSE 0 END AS want_ms,
        end_time_unix_nano IS NULL AND sender IS NOT NULL AS unhashed_sender,
        sha256(array_to_string(list_transform(list_concat(CASE
            WHEN end_time_unix_nano IS NULL THEN [
                'agentaudit.entry.v1',
                chain_id,
                CAST(seq AS VARCHAR),
                CAST(time_unix_nano AS VARCHAR)]
            ELSE [
                'agentaudit.entry.v2',
                chain_id,
                CAST(seq AS VARCHAR),
                CAST(time_unix_nano AS VARCHAR),
                CAST(end_time_unix_nano AS VARCHAR)]
        END, [
            execution_id,
            trace_id,
            span_id,
            parent_span_id,
            agent_id,
            agent_name,
            service_name,
            principal
        ], CASE WHEN end_time_unix_nano IS NULL THEN []::VARCHAR[] ELSE [sender] END, [
            action_type,
            target_system,
            target_resource,
            proposed_value,
            previous_value,
            reasoning,
            approver,
            result,
            status_code,
            attributes,
            validation,
            prev_hash
        ]), lambda f: CASE WHEN f IS NULL THEN '-' ELSE CAST(strlen(f) AS VARCHAR) || ':' || f END), '')) AS recomputed_hash
    FROM audit_entries
),
-- One row per (chain_id, seq) present, with the seq before it in the chain.
seqs AS (
    SELECT
        chain_id,
        seq,
        count(*) AS n,
        list_sort(list_distinct(list(entry_hash))) AS hashes
    FROM audit_entries
    GROUP BY chain_id, seq
),
neighbours AS (
    SELECT
        chain_id,
        seq,
        n,
        hashes,
        lag(seq) OVER w AS prev_seq,
        lag(hashes) OVER w AS prev_hashes
    FROM seqs
    WINDOW w AS (PARTITION BY chain_id ORDER BY seq)
),
violations AS (
    SELECT DISTINCT
        chain_id,
        seq,
        'hash_mismatch' AS violation,
        'got entry_hash ' || coalesce(entry_hash, 'NULL') || ', want ' || recomputed_hash
            || CASE WHEN unhashed_sender THEN ' and no sender: a sender on a row without end_time_unix_nano (version 1), which no hash covers' ELSE '' END AS detail
    FROM entries
    WHERE entry_hash IS DISTINCT FROM recomputed_hash OR unhashed_sender

    UNION ALL

    SELECT DISTINCT
        e.chain_id,
        e.seq,
        'broken_link',
        CASE
            WHEN nb.prev_seq IS NULL
                THEN 'got prev_hash ' || coalesce(e.prev_hash, 'NULL') || ', want the genesis hash ' || repeat('0', 64)
            ELSE 'got prev_hash ' || coalesce(e.prev_hash, 'NULL') || ', want ' || array_to_string(nb.prev_hashes, ' or ')
                || ' (entry_hash of seq ' || nb.prev_seq || ')'
        END
    FROM entries AS e
    JOIN neighbours AS nb ON nb.chain_id = e.chain_id AND nb.seq = e.seq
    WHERE CASE
        -- The first row of a chain can be checked only if it is seq 0;
        -- otherwise its predecessor is missing, which is reported as a gap.
        WHEN nb.prev_seq IS NULL THEN e.seq = 0 AND e.prev_hash IS DISTINCT FROM repeat('0', 64)
        ELSE NOT coalesce(list_contains(nb.prev_hashes, e.prev_hash), false)
    END

    UNION ALL

    SELECT
        chain_id,
        seq,
        'gap',
        CASE
            WHEN prev_seq IS NULL THEN 'chain starts at seq ' || seq || ', want 0'
            WHEN seq = prev_seq + 2 THEN 'seq ' || (prev_seq + 1) || ' missing'
            ELSE 'seq ' || (prev_seq + 1) || ' to ' || (seq - 1) || ' missing'
        END
    FROM neighbours
    WHERE (prev_seq IS NULL AND seq <> 0) OR seq > prev_seq + 1

    UNION ALL

    SELECT
        chain_id,
        seq,
        'duplicate',
        n || ' rows, ' || len(hashes) || ' distinct entry_hash'
    FROM neighbours
    WHERE n > 1

    UNION ALL

    -- epoch_us reads TIMESTAMP and TIMESTAMP WITH TIME ZONE alike, whatever
    -- the session's TimeZone; it is NULL for 'infinity'. |want_ms| is at
    -- most 9223372036855, so want_ms * 1000 fits a BIGINT.
    SELECT DISTINCT
        chain_id,
        seq,
        'timestamp_mismatch',
        'got timestamp ' || coalesce(CAST("timestamp" AS VARCHAR), 'NULL') || ', want '
            || coalesce(CAST(epoch_ms(want_ms) AS VARCHAR) || ' (UTC)', 'none') || ': time_unix_nano '
            || coalesce(CAST(time_unix_nano AS VARCHAR), 'NULL') || ' rounded down to ms'
    FROM entries
    WHERE want_ms IS NULL OR epoch_us("timestamp") IS DISTINCT FROM want_ms * 1000

    UNION ALL

    SELECT DISTINCT
        chain_id,
        seq,
        'recorded_loss',
        coalesce(result, 'NULL') || ' (accepted by ' || coalesce(approver, 'NULL') || ': ' || coalesce(reasoning, 'NULL') || ')'
    FROM audit_entries
    WHERE action_type = 'agentaudit.loss'
)
SELECT chain_id, seq, violation, detail
FROM violations
ORDER BY chain_id, seq, violation, detail
