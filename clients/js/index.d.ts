// Types of @agentaudit/approvals (index.mjs). The API's shapes are those of
// docs/APPROVALS.md.

/** Where the service is and who asks; each falls back to the environment, then the default. */
export interface ClientOptions {
  /** The service's address; else $AGENTAUDIT_APPROVALS_URL, else http://127.0.0.1:4320. */
  baseURL?: string;
  /** Sent as "Authorization: Bearer <token>"; else $AGENTAUDIT_TOKEN, else none. */
  token?: string;
  /** Aborting it ends retries and waits: the promise rejects with its reason. */
  signal?: AbortSignal;
  /** How long one long poll may last (ms); default 30000, at most 60000. */
  pollWaitMs?: number;
  /** The first pause after a failure (ms), doubled up to maxBackoffMs; default 250. A Retry-After replaces it. */
  backoffMs?: number;
  /** Default 10000. */
  maxBackoffMs?: number;
  /** Default: the global fetch. */
  fetch?: typeof fetch;
}

/** Anything with setAttribute, such as an @opentelemetry/api Span. */
export interface SpanLike {
  setAttribute(key: string, value: string): unknown;
  spanContext?(): { traceId: string; spanId: string };
}

export interface ApprovalRequest extends ClientOptions {
  executionId: string;
  targetSystem: string;
  /** May be "". */
  targetResource: string;
  /** Exactly what the write will set as audit.value.proposed; null (or absent) for none. */
  proposedValue?: string | null;
  previousValue?: string | null;
  reasoning?: string;
  /** The tool's name, which policies may match on. */
  tool?: string;
  agentId?: string;
  agentName?: string;
  serviceName?: string;
  principal?: string;
  /** Hex ids placing the request entry in the agent's trace; else taken from span, if given. */
  traceId?: string;
  spanId?: string;
  span?: SpanLike;
  /** A Go duration ("15m") or milliseconds; default: the service's. */
  expiresIn?: string | number;
  /** Makes retries safe; generated when absent. Give your own to survive a restart of the agent. */
  idempotencyKey?: string;
}

export type ApprovalStatus = "pending" | "approved" | "rejected" | "expired";

export interface EntryRef {
  chain_id: string;
  seq: number;
  entry_hash: string;
}

export interface Decision extends EntryRef {
  decision: "approve" | "reject" | "expire";
  /** The reviewer's authenticated identity, or the auto policy's name; null when expired. */
  approver: string | null;
  auto: boolean;
  comment: string | null;
  decided_at: string;
}

/** An approval as the API shows it (GET /v1/approvals/{id}). */
export interface Approval {
  id: string;
  status: ApprovalStatus;
  execution_id: string;
  target_system: string;
  target_resource: string;
  proposed_value: string | null;
  previous_value: string | null;
  reasoning: string | null;
  tool: string | null;
  agent_id: string | null;
  agent_name: string | null;
  service_name: string | null;
  principal: string | null;
  trace_id: string;
  span_id: string;
  requester: string | null;
  policy: string | null;
  requested_at: string;
  expires_at: string;
  request: EntryRef;
  /** null while pending. */
  decision: Decision | null;
  /** The signed checkpoint note covering the decision entry, once sealed. */
  checkpoint: string | null;
}

/**
 * Asks for approval (POST /v1/approvals): pending, or already approved by an
 * auto policy. Retries network errors and 503s with the same idempotency key.
 */
export function requestApproval(opts: ApprovalRequest): Promise<Approval>;

/**
 * Resolves once the approval is approved, rejected or expired, long-polling
 * and resuming after network errors and collector restarts.
 */
export function waitForDecision(id: string, opts?: ClientOptions): Promise<Approval>;

export function isApproved(approval: Approval | null | undefined): boolean;

/** null when approved, else why the action must not go ahead. */
export function decisionError(approval: Approval): ApprovalDecisionError | null;

export function newIdempotencyKey(): string;

/** Sets audit.approval.id on span; returns span. */
export function attach<S extends SpanLike>(span: S, approval: Approval): S;

/** The audit.* attributes of the approved write, exactly as approved. */
export function writeAttributes(approval: Approval): Record<string, string>;

/** A refusal retrying cannot change: 400, 401, 403, 404, 409, 413, 500… */
export class ApprovalApiError extends Error {
  readonly name: "ApprovalApiError";
  readonly status: number;
  /** The {"error": "..."} of the answer. */
  readonly apiMessage: string;
  readonly retryAfterMs: number;
}

export class ApprovalDecisionError extends Error {
  readonly name: "ApprovalDecisionError";
  readonly status: ApprovalStatus;
  readonly approval: Approval;
}
