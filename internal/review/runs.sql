-- agentaudit run status: one row per execution (run) of the trail.
--
-- This query is the definition of a run's status that every view of
-- agentaudit uses (auditctl runs, show, export, serve); the README's
-- "Run status" section states it in words. Run it yourself in DuckDB 1.5+
-- over the view audit_entries that docs/FORMAT.md creates:
--
--   SET VARIABLE as_of_ns = epoch_ns(TIMESTAMPTZ '2026-03-10 00:00:00+00');  -- optional, default now
--   SET VARIABLE abandon_after_ns = 24 * 3600 * 1000000000;                -- optional, default 24 h
--   <this file>
--
-- A run's steps are in "true order": by time_unix_nano, then chain_id, then
-- seq (seq is arrival order; it only breaks ties).
WITH params AS (
  SELECT
    coalesce(getvariable('as_of_ns'), epoch_ns(current_timestamp::TIMESTAMP))::BIGINT AS as_of_ns,
    coalesce(getvariable('abandon_after_ns'), 86400000000000)::BIGINT AS abandon_after_ns
),
e AS (
  SELECT
    *,
    -- a v1 entry has no end time: its start stands in for it
    coalesce(end_time_unix_nano, time_unix_nano) AS end_ns,
    -- an error: an error action, span status Error, or a result starting with "error"
    (action_type = 'error' OR status_code = 'Error' OR lower(result) LIKE 'error%') AS is_error,
    row_number() OVER (PARTITION BY execution_id ORDER BY time_unix_nano, chain_id, seq) AS step
  FROM audit_entries
  -- The collector's records about itself are no agent's run: the
  -- approval service's policies in force (docs/APPROVALS.md) and the
  -- markers of its starts and stops (docs/FORMAT.md, "Coverage").
  WHERE action_type NOT IN ('agentaudit.approval_policy', 'agentaudit.recorder_start', 'agentaudit.recorder_stop')
),
-- The entry that decides a run's end: its last end entry, in step order.
ends AS (
  SELECT execution_id, max(step) AS end_step
  FROM e WHERE action_type = 'end'
  GROUP BY execution_id
),
-- request_approval entries with no approve or reject for the same target
-- (target_system and target_resource) later in the run, nor the approval
-- service's record that the request expired undecided
-- (agentaudit.approval_expired, docs/APPROVALS.md).
pending AS (
  SELECT r.execution_id, count(*) AS pending_approvals
  FROM e r
  WHERE r.action_type = 'request_approval'
    AND NOT EXISTS (
      SELECT 1 FROM e d
      WHERE d.execution_id = r.execution_id
        AND d.action_type IN ('approve', 'reject', 'agentaudit.approval_expired')
        AND d.target_system = r.target_system
        AND d.target_resource = r.target_resource
        AND d.step > r.step)
  GROUP BY r.execution_id
),
agg AS (
  SELECT
    e.execution_id,
    arg_min(e.agent_name, e.step) FILTER (WHERE e.agent_name IS NOT NULL) AS agent_name,
    arg_min(e.agent_id, e.step) FILTER (WHERE e.agent_id IS NOT NULL) AS agent_id,
    arg_min(e.service_name, e.step) FILTER (WHERE e.service_name IS NOT NULL) AS service_name,
    arg_min(e.principal, e.step) FILTER (WHERE e.principal IS NOT NULL) AS principal,
    coalesce(min(e.time_unix_nano) FILTER (WHERE e.action_type = 'start'), min(e.time_unix_nano)) AS start_ns,
    max(e.end_ns) AS last_ns,
    count(*) AS entries,
    count(*) FILTER (WHERE e.action_type NOT IN ('start', 'end')) AS actions,
    count(*) FILTER (WHERE e.is_error) AS errors,
    count(*) FILTER (WHERE e.action_type = 'approve') AS approvals,
    count(*) FILTER (WHERE e.action_type = 'reject') AS rejections,
    count(*) FILTER (WHERE e.action_type = 'request_approval') AS approval_requests,
    arg_max(e.action_type, e.step) AS last_action,
    arg_max(e.end_ns, e.step) AS last_action_end_ns,
    bool_or(e.is_error) FILTER (WHERE e.step = ends.end_step) AS end_is_error,
    max(e.end_ns) FILTER (WHERE e.step = ends.end_step) AS end_entry_ns,
    count(*) FILTER (WHERE e.step > ends.end_step) AS after_end,
    any_value(ends.end_step) AS end_step,
    list(DISTINCT e.chain_id ORDER BY e.chain_id) AS chains
  FROM e LEFT JOIN ends USING (execution_id)
  GROUP BY e.execution_id
),
runs AS (
  SELECT
    agg.*,
    coalesce(pending.pending_approvals, 0) AS pending_approvals,
    CASE
      -- An end entry decides: failed when it carries an error, else
      -- completed. Entries after it are counted (after_end), not weighed.
      WHEN agg.end_step IS NOT NULL AND agg.end_is_error THEN 'failed'
      WHEN agg.end_step IS NOT NULL THEN 'completed'
      -- No end: an error as the last step fails the run.
      WHEN agg.last_action = 'error' THEN 'failed'
      -- No entry for abandon_after: abandoned, also while an approval is
      -- pending (the request is then stale).
      WHEN agg.last_ns < params.as_of_ns - params.abandon_after_ns THEN 'abandoned'
      WHEN coalesce(pending.pending_approvals, 0) > 0 THEN 'awaiting_approval'
      ELSE 'in_progress'
    END AS status
  FROM agg CROSS JOIN params LEFT JOIN pending USING (execution_id)
)
SELECT
  execution_id,
  coalesce(agent_name, agent_id, service_name) AS agent,
  agent_id, agent_name, service_name, principal,
  status,
  start_ns,
  CASE
    WHEN status = 'failed' AND end_step IS NULL THEN last_action_end_ns
    WHEN status IN ('completed', 'failed') THEN end_entry_ns
  END AS end_ns,
  last_ns,
  entries, actions, errors, approvals, rejections, approval_requests,
  pending_approvals, after_end, chains
FROM runs
