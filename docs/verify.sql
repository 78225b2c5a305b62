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
-- The approval checks (docs/APPROVALS.md, "The checks"). The service's
-- entries are those whose agentaudit.approval.id no validation problem
-- flags reserved_key; the first request and the first decision (approve,
-- reject, agentaudit.approval_expired) of an id count, by time_unix_nano,
-- chain_id, seq, over every chain:
--
--   self_approved       a person's approve or reject whose approver or
--                       sender is the request's sender
--   approval_mismatch   a write whose audit.approval.id names no request,
--                       or an approval not approved, or that differs from
--                       the request in execution_id, target_system,
--                       target_resource or proposed_value, or was recorded
--                       before the decision (same chain: lower seq, else
--                       earlier time_unix_nano), or whose decision's
--                       request_hash is not the request's entry_hash
--   approval_reused     a write naming an approval that a write recorded
--                       before it already used without failing
--   unapproved_write    a write without audit.approval.id that a policy of
--                       the latest agentaudit.approval_policy entry of its
--                       chain (lower seq) matches; globs: '*' any run, '?'
--                       one character (matched as LIKE's '%' and '_')
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
-- The approval service's entries. json_valid guards every JSON function:
-- a tampered row's text is reported above, not fatal here.
ap_service AS (
    SELECT
        chain_id,
        seq,
        time_unix_nano AS tun,
        action_type,
        sender,
        approver,
        entry_hash,
        execution_id,
        target_system,
        target_resource,
        proposed_value,
        json_extract_string(attributes, '$."agentaudit.approval.id"') AS approval_id,
        json_extract_string(attributes, '$."agentaudit.approval.request_hash"') AS request_hash,
        coalesce(json_extract_string(attributes, '$."agentaudit.approval.auto"') = 'true', false) AS auto
    FROM audit_entries
    WHERE action_type IN ('request_approval', 'approve', 'reject', 'agentaudit.approval_expired')
        AND CASE WHEN json_valid(attributes) THEN json_exists(attributes, '$."agentaudit.approval.id"') ELSE false END
        AND NOT CASE WHEN json_valid(validation) THEN len(list_filter(CAST(json_extract(validation, '$[*]') AS JSON[]),
            lambda p: json_extract_string(p, '$.problem') = 'reserved_key'
                AND starts_with(json_extract_string(p, '$.field'), 'agentaudit.approval.'))) > 0 ELSE false END
),
ap_requests AS (
    SELECT *
    FROM ap_service
    WHERE action_type = 'request_approval'
    QUALIFY row_number() OVER (PARTITION BY approval_id ORDER BY tun, chain_id, seq) = 1
),
ap_decisions AS (
    SELECT *
    FROM ap_service
    WHERE action_type <> 'request_approval'
    QUALIFY row_number() OVER (PARTITION BY approval_id ORDER BY tun, chain_id, seq) = 1
),
-- The writes, with their approval id when they carry one.
ap_writes AS (
    SELECT
        chain_id,
        seq,
        time_unix_nano AS tun,
        execution_id,
        target_system,
        target_resource,
        proposed_value,
        CASE WHEN json_valid(attributes) AND json_exists(attributes, '$."audit.approval.id"')
            THEN json_extract_string(attributes, '$."audit.approval.id"') END AS approval_id,
        CASE WHEN json_valid(attributes) AND json_exists(attributes, '$."audit.approval.id"') THEN true ELSE false END AS has_id,
        coalesce(CASE WHEN json_valid(attributes) THEN json_extract_string(attributes, '$."gen_ai.tool.name"') END, target_system) AS tool,
        coalesce(status_code = 'Error', false) OR coalesce(starts_with(result, 'error'), false) AS failed
    FROM audit_entries
    WHERE action_type = 'write'
),
-- Each policy entry's policies, in order, and the seq of the chain's next
-- policy entry, where they stop being in force.
ap_policy_lists AS (
    SELECT
        chain_id,
        seq,
        lead(seq) OVER (PARTITION BY chain_id ORDER BY seq) AS next_seq,
        CASE WHEN json_valid(proposed_value) THEN from_json(proposed_value,
            '[{"name":"VARCHAR","decide":"VARCHAR","systems":["VARCHAR"],"resources":["VARCHAR"],"tools":["VARCHAR"]}]') END AS ps
    FROM audit_entries
    WHERE action_type = 'agentaudit.approval_policy'
),
ap_policies AS (
    SELECT
        chain_id,
        seq,
        next_seq,
        pos,
        ps[pos].name AS name,
        -- Globs as LIKE patterns: LIKE's own wildcards escaped, then '*'
        -- and '?' become '%' and '_' (globs have no brackets nor '\').
        list_transform(coalesce(ps[pos].systems, []), lambda g: replace(replace(replace(replace(g, '%', '\%'), '_', '\_'), '*', '%'), '?', '_')) AS systems,
        list_transform(coalesce(ps[pos].resources, []), lambda g: replace(replace(replace(replace(g, '%', '\%'), '_', '\_'), '*', '%'), '?', '_')) AS resources,
        list_transform(coalesce(ps[pos].tools, []), lambda g: replace(replace(replace(replace(g, '%', '\%'), '_', '\_'), '*', '%'), '?', '_')) AS tools
    FROM ap_policy_lists, unnest(range(1, len(coalesce(ps, [])) + 1)) AS t(pos)
),
ap_covered AS (
    SELECT w.chain_id, w.seq, p.name, p.seq AS policy_seq
    FROM ap_writes AS w
    JOIN ap_policies AS p ON p.chain_id = w.chain_id AND p.seq < w.seq AND (p.next_seq IS NULL OR p.next_seq > w.seq)
    WHERE NOT w.has_id
        AND (len(p.systems) = 0 OR len(list_filter(p.systems, lambda g: like_escape(w.target_system, g, '\'))) > 0)
        AND (len(p.resources) = 0 OR len(list_filter(p.resources, lambda g: like_escape(w.target_resource, g, '\'))) > 0)
        AND (len(p.tools) = 0 OR len(list_filter(p.tools, lambda g: like_escape(w.tool, g, '\'))) > 0)
    QUALIFY row_number() OVER (PARTITION BY w.chain_id, w.seq ORDER BY p.pos) = 1
),
ap_mismatch AS (
    SELECT
        w.chain_id,
        w.seq,
        w.approval_id,
        CASE WHEN q.approval_id IS NULL THEN 'names no request in the trail' ELSE nullif(concat_ws('; ',
            CASE
                WHEN d.approval_id IS NULL THEN 'not decided (pending)'
                WHEN d.action_type = 'reject' THEN 'rejected'
                WHEN d.action_type = 'agentaudit.approval_expired' THEN 'expired'
            END,
            nullif(concat_ws(', ',
                CASE WHEN w.execution_id IS DISTINCT FROM q.execution_id THEN 'execution_id' END,
                CASE WHEN w.target_system IS DISTINCT FROM q.target_system THEN 'target_system' END,
                CASE WHEN w.target_resource IS DISTINCT FROM q.target_resource THEN 'target_resource' END,
                CASE WHEN w.proposed_value IS DISTINCT FROM q.proposed_value THEN 'proposed_value' END), '')
                || ' differ from the request''s (chain ' || q.chain_id || ' seq ' || q.seq || ')',
            CASE WHEN d.approval_id IS NOT NULL AND CASE WHEN w.chain_id = d.chain_id THEN w.seq < d.seq ELSE w.tun < d.tun END
                THEN 'recorded before its decision (chain ' || d.chain_id || ' seq ' || d.seq || ')' END,
            CASE WHEN d.approval_id IS NOT NULL AND d.request_hash IS DISTINCT FROM q.entry_hash
                THEN 'the decision''s request_hash ' || coalesce(d.request_hash, 'NULL') || ' is not the request''s entry_hash' END
        ), '') END AS reasons
    FROM ap_writes AS w
    LEFT JOIN ap_requests AS q ON q.approval_id = w.approval_id
    LEFT JOIN ap_decisions AS d ON d.approval_id = w.approval_id
    WHERE w.has_id
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

    UNION ALL

    SELECT DISTINCT
        d.chain_id,
        d.seq,
        'self_approved',
        d.action_type || ' of approval ' || d.approval_id || ' by ' || coalesce(d.approver, 'NULL') || ' (sent by '
            || coalesce(d.sender, 'NULL') || '), requested by ' || q.sender || ' (chain ' || q.chain_id || ' seq ' || q.seq || ')'
    FROM ap_service AS d
    JOIN ap_requests AS q ON q.approval_id = d.approval_id
    WHERE d.action_type IN ('approve', 'reject') AND NOT d.auto AND q.sender IS NOT NULL
        AND (d.approver = q.sender OR d.sender = q.sender)

    UNION ALL

    SELECT DISTINCT chain_id, seq, 'approval_mismatch', 'approval ' || coalesce(approval_id, 'NULL') || ': ' || reasons
    FROM ap_mismatch
    WHERE reasons IS NOT NULL

    UNION ALL

    SELECT DISTINCT w.chain_id, w.seq, 'approval_reused', 'approval ' || coalesce(w.approval_id, 'NULL') || ' already used by an earlier write'
    FROM ap_writes AS w
    WHERE w.has_id AND EXISTS (
        SELECT 1 FROM ap_writes AS o
        WHERE o.has_id AND o.approval_id = w.approval_id AND NOT o.failed
            AND CASE WHEN o.chain_id = w.chain_id THEN o.seq < w.seq ELSE o.tun < w.tun END)

    UNION ALL

    SELECT DISTINCT chain_id, seq, 'unapproved_write',
        'a write without audit.approval.id covered by policy ' || name || ' (in force since seq ' || policy_seq || ')'
    FROM ap_covered
)
SELECT chain_id, seq, violation, detail
FROM violations
ORDER BY chain_id, seq, violation, detail
