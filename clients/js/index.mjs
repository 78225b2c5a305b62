// @agentaudit/approvals: the agent's side of agentaudit's approval service
// (docs/APPROVALS.md). Ask before an important action, wait for a
// person's decision, and tag the write that follows so that the trail
// links request → decision → write and `auditctl verify` can check that
// what was written is what was approved.
//
// No runtime dependencies: the global fetch of Node.js 20+. The same
// retry semantics as the Go helper (approvalclient): requestApproval sends
// an idempotency key (one is generated when none is given) and retries
// network errors and 503s (honouring Retry-After) with it, so that at most
// one approval is created; waitForDecision long-polls and resumes after
// dropped connections and collector restarts. Both back off exponentially
// with jitter and give up only when their signal aborts, or on an answer
// retrying cannot change (an ApprovalApiError: 400, 401, 403, 404, 409…).

import { randomUUID } from "node:crypto";

const defaultBaseURL = "http://127.0.0.1:4320";
const defaults = { pollWaitMs: 30_000, backoffMs: 250, maxBackoffMs: 10_000 };
const maxPollWaitMs = 60_000; // the service's limit

// The fields of POST /v1/approvals, camelCase → the API's names. The
// service refuses unknown fields: exactly these are sent.
const requestFields = {
  executionId: "execution_id",
  targetSystem: "target_system",
  targetResource: "target_resource",
  proposedValue: "proposed_value",
  previousValue: "previous_value",
  reasoning: "reasoning",
  tool: "tool",
  agentId: "agent_id",
  agentName: "agent_name",
  serviceName: "service_name",
  principal: "principal",
  traceId: "trace_id",
  spanId: "span_id",
  expiresIn: "expires_in",
  idempotencyKey: "idempotency_key",
};

/** An answer of the service that retrying cannot change (or the last 5xx when the signal aborted). */
export class ApprovalApiError extends Error {
  constructor(status, message, retryAfterMs) {
    super(`approval service: ${status}: ${message}`);
    this.name = "ApprovalApiError";
    this.status = status;
    this.apiMessage = message;
    this.retryAfterMs = retryAfterMs;
  }
}

/** An approval that does not let the action go ahead: rejected, expired (or still pending). */
export class ApprovalDecisionError extends Error {
  constructor(approval) {
    const d = approval.decision;
    let msg;
    switch (approval.status) {
      case "rejected":
        msg = `approval ${approval.id} rejected${d?.approver ? ` by ${d.approver}` : ""}${d?.comment ? ` (${JSON.stringify(d.comment)})` : ""}`;
        break;
      case "expired":
        msg = `approval ${approval.id} expired at ${approval.expires_at} undecided`;
        break;
      default:
        msg = `approval ${approval.id} is ${approval.status}`;
    }
    super(msg);
    this.name = "ApprovalDecisionError";
    this.status = approval.status;
    this.approval = approval;
  }
}

/** isApproved reports whether the action may go ahead. */
export function isApproved(approval) {
  return approval?.status === "approved";
}

/** decisionError is null when approval is approved, else the ApprovalDecisionError saying why not. */
export function decisionError(approval) {
  return isApproved(approval) ? null : new ApprovalDecisionError(approval);
}

/** newIdempotencyKey returns a fresh random key for requestApproval's idempotencyKey. */
export function newIdempotencyKey() {
  return `ak_${randomUUID().replaceAll("-", "")}`;
}

// clientOptions resolves the options of a call: given, else the
// environment (read at each call, so that a script may set it late), else
// the defaults.
function clientOptions(o = {}) {
  const baseURL = (o.baseURL ?? (process.env.AGENTAUDIT_APPROVALS_URL || defaultBaseURL)).replace(/\/+$/, "");
  let u;
  try {
    u = new URL(baseURL);
  } catch {
    u = null;
  }
  if (!u || (u.protocol !== "http:" && u.protocol !== "https:")) {
    throw new TypeError(`baseURL ${JSON.stringify(baseURL)} is not an http(s) URL such as ${defaultBaseURL}`);
  }
  return {
    baseURL,
    token: o.token ?? (process.env.AGENTAUDIT_TOKEN || ""),
    fetch: o.fetch ?? globalThis.fetch,
    pollWaitMs: Math.min(o.pollWaitMs ?? defaults.pollWaitMs, maxPollWaitMs),
    backoffMs: o.backoffMs ?? defaults.backoffMs,
    maxBackoffMs: o.maxBackoffMs ?? defaults.maxBackoffMs,
  };
}

/**
 * requestApproval asks for approval of an action (POST /v1/approvals) and
 * resolves to the approval: pending, or already approved when an auto
 * policy decides it.
 */
export async function requestApproval(opts) {
  const c = clientOptions(opts);
  const body = {};
  for (const [k, name] of Object.entries(requestFields)) {
    if (opts[k] !== undefined) body[name] = opts[k];
  }
  if (opts.span && body.trace_id === undefined && body.span_id === undefined) {
    const sc = opts.span.spanContext?.();
    if (sc?.traceId && sc?.spanId) {
      body.trace_id = sc.traceId;
      body.span_id = sc.spanId;
    }
  }
  // The trail tells null from "": the values are sent as given, null
  // when absent.
  for (const name of ["proposed_value", "previous_value"]) {
    body[name] ??= null;
    if (body[name] !== null && typeof body[name] !== "string") {
      throw new TypeError(`${name}: a string or null, not ${typeof body[name]}`);
    }
  }
  if (typeof body.expires_in === "number") body.expires_in = `${body.expires_in}ms`;
  body.idempotency_key ??= newIdempotencyKey();
  const json = JSON.stringify(body);

  const approval = await retry(c, opts.signal, async (signal) => ({
    result: await send(c, "POST", "/v1/approvals", json, signal),
  }));
  // The service answers a known key with the approval it was first given,
  // whatever the body: a key reused for another action must not pass for
  // an approval of this one.
  for (const name of ["execution_id", "target_system", "target_resource", "proposed_value", "previous_value"]) {
    if ((approval[name] ?? null) !== (body[name] ?? null)) {
      throw new Error(
        `the service answered idempotency key ${JSON.stringify(body.idempotency_key)} with approval ${approval.id} of another action (its ${name} differs): is the key reused?`,
      );
    }
  }
  return approval;
}

/**
 * waitForDecision resolves to approval id once it is no longer pending:
 * approved, rejected or expired (see isApproved, decisionError). It
 * rejects with the signal's reason when the signal aborts.
 */
export async function waitForDecision(id, opts = {}) {
  if (!id) throw new TypeError("waitForDecision: empty approval id");
  const c = clientOptions(opts);
  const path = `/v1/approvals/${encodeURIComponent(id)}?wait=${c.pollWaitMs}ms`;
  return retry(c, opts.signal, async (signal) => {
    const start = Date.now();
    const a = await send(c, "GET", path, undefined, signal);
    if (a.status !== "pending") return { result: a };
    // Still pending: ask again at once, unless the poll came back early
    // (a server that does not hold polls, or one stopping): then pause as
    // after a failure rather than spin.
    return Date.now() - start < c.pollWaitMs / 2 ? { again: true, pause: true } : { again: true };
  });
}

// retry runs attempt until it gives a result, backing off after failures
// that may pass and throwing the others at once.
async function retry(c, signal, attempt) {
  let backoff = c.backoffMs;
  for (;;) {
    signal?.throwIfAborted();
    let pause = 0;
    try {
      const r = await attempt(signal);
      if (!r.again) return r.result;
      if (!r.pause) {
        backoff = c.backoffMs; // a poll that ran its course: the service is there
        continue;
      }
      pause = jitter(backoff);
      backoff = Math.min(backoff * 2, c.maxBackoffMs);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (!retryable(err)) throw err;
      pause = err.retryAfterMs > 0 ? err.retryAfterMs : jitter(backoff);
      backoff = Math.min(backoff * 2, c.maxBackoffMs);
    }
    await sleep(pause, signal);
  }
}

// jitter spreads agents restarted together: a pause in [d/2, d].
const jitter = (d) => d / 2 + Math.random() * (d / 2);

// NetworkError is a request that got no answer, or a cut one: retried.
class NetworkError extends Error {
  constructor(what, cause) {
    super(`${what}: ${cause?.cause?.message ?? cause?.message ?? cause}`, { cause });
    this.name = "NetworkError";
  }
}

// retryable: a network error, and the ApprovalApiErrors of an overloaded
// or restarting service.
function retryable(err) {
  if (err instanceof NetworkError) return true;
  return err instanceof ApprovalApiError && [429, 502, 503, 504].includes(err.status);
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

// send makes one request and parses the approval it answers.
async function send(c, method, path, body, signal) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (c.token) headers.authorization = `Bearer ${c.token}`;
  const what = `${method} ${c.baseURL}${path}`;
  let res, text;
  try {
    res = await c.fetch(`${c.baseURL}${path}`, { method, headers, body, signal });
    text = await res.text();
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw new NetworkError(what, err);
  }
  if (res.status !== 200 && res.status !== 201) {
    throw new ApprovalApiError(res.status, errorMessage(text), retryAfterMs(res.headers.get("retry-after")));
  }
  let a;
  try {
    a = JSON.parse(text);
  } catch (err) {
    throw new NetworkError(`${what}: the answer is cut`, err); // retried like a cut
  }
  if (!a || typeof a.id !== "string" || typeof a.status !== "string") {
    throw new ApprovalApiError(res.status, `the answer is no approval: ${text.slice(0, 200)}`);
  }
  return a;
}

function errorMessage(text) {
  try {
    const e = JSON.parse(text);
    if (typeof e?.error === "string" && e.error) return e.error;
  } catch {
    // a proxy's page: its start
  }
  const s = text.trim();
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}

// retryAfterMs reads a Retry-After header: seconds, or an HTTP date.
function retryAfterMs(v) {
  if (!v) return 0;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? 0 : Math.max(0, t - Date.now());
}

// The attribute keys of the contract that the write span carries.
const keys = {
  actionType: "audit.action.type",
  executionId: "audit.execution.id",
  targetSystem: "audit.target.system",
  targetResource: "audit.target.resource",
  proposed: "audit.value.proposed",
  previous: "audit.value.previous",
  approvalId: "audit.approval.id",
};

/**
 * attach names the approval on span (audit.approval.id), for a span that
 * sets its other audit.* attributes itself. span is an OpenTelemetry Span
 * (anything with setAttribute); it is returned.
 */
export function attach(span, approval) {
  if (span && approval?.id) span.setAttribute(keys.approvalId, approval.id);
  return span;
}

/**
 * writeAttributes are the audit.* attributes of the write the approval
 * approved, exactly as approved (null values left out). `auditctl verify`
 * reports approval_mismatch when a write's execution, target or proposed
 * value differs from its approval's: set these, do not override them, and
 * add audit.result after the write.
 */
export function writeAttributes(approval) {
  const attrs = {
    [keys.actionType]: "write",
    [keys.executionId]: approval.execution_id,
    [keys.targetSystem]: approval.target_system,
    [keys.targetResource]: approval.target_resource,
  };
  if (approval.proposed_value != null) attrs[keys.proposed] = approval.proposed_value;
  if (approval.previous_value != null) attrs[keys.previous] = approval.previous_value;
  attrs[keys.approvalId] = approval.id;
  return attrs;
}
