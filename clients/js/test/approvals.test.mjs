// The helper against a fake of the service's API (fake-service.mjs): the
// retry and resume semantics, the errors, the span attributes.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import {
  ApprovalApiError,
  ApprovalDecisionError,
  attach,
  decisionError,
  isApproved,
  requestApproval,
  waitForDecision,
  writeAttributes,
} from "../index.mjs";
import { FakeService } from "./fake-service.mjs";

const crmRequest = {
  executionId: "exec_a7f3b2c1",
  targetSystem: "HubSpot CRM",
  targetResource: "Contact #48291 (email field)",
  proposedValue: "jane@newdomain.com",
  previousValue: "jane@olddomain.com",
  reasoning: "Email bounced; found updated address via Clearbit",
  tool: "crm_update_contact",
};

let f;
// Short pauses, so that each test runs in well under a second unless it
// tests a Retry-After.
let opts;
beforeEach(async () => {
  f = await new FakeService().start();
  opts = { baseURL: f.url, pollWaitMs: 200, backoffMs: 5, maxBackoffMs: 50, signal: AbortSignal.timeout(10_000) };
});
afterEach(() => f.stop());

describe("requestApproval and waitForDecision", { timeout: 20_000 }, () => {
  test("approved after polls", async () => {
    f.approveAt = 3;
    let a = await requestApproval({ ...crmRequest, ...opts });
    assert.equal(a.status, "pending");
    assert.equal(a.id, "apr_0001");
    assert.equal(a.target_resource, "Contact #48291 (email field)");
    assert.equal(a.decision, null);
    assert.equal(isApproved(a), false);
    assert.ok(decisionError(a) instanceof ApprovalDecisionError);

    a = await waitForDecision(a.id, opts);
    assert.equal(isApproved(a), true);
    assert.equal(decisionError(a), null);
    assert.equal(a.decision.approver, "alice@example.com");
    assert.equal(a.decision.entry_hash, "d".repeat(64));
    assert.equal(f.posts, 1);
    assert.equal(f.polls, 3, "two polls ran out pending, the third was woken by the decision");
    assert.deepEqual(f.waits, ["200ms", "200ms", "200ms"]);
  });

  test("a 503 is retried after its Retry-After, with the same key", async () => {
    f.unavailable = 1; // Retry-After: 1
    const start = Date.now();
    const a = await requestApproval({ ...crmRequest, ...opts });
    assert.ok(Date.now() - start >= 1000, "Retry-After: 1 is honoured over the 5ms backoff");
    assert.equal(a.status, "pending");
    assert.equal(f.keys.length, 2);
    assert.match(f.keys[0], /^ak_[0-9a-f]{32}$/, "a key is generated");
    assert.equal(f.keys[1], f.keys[0], "the retry sends the same key");
    assert.equal(f.approvals.size, 1);
  });

  test("an answer cut after the approval was created: the retry gets that approval", async () => {
    f.cutPost = 1;
    const a = await requestApproval({ ...crmRequest, ...opts, idempotencyKey: "step-12" });
    assert.equal(a.id, "apr_0001");
    assert.equal(f.posts, 2);
    assert.equal(f.approvals.size, 1, "one approval for two tries");
    assert.deepEqual(f.keys, ["step-12", "step-12"]);
  });

  test("a poll cut mid-way is resumed", async () => {
    f.cutPoll = [1];
    f.approveAt = 2;
    const a = await requestApproval({ ...crmRequest, ...opts });
    assert.equal(isApproved(await waitForDecision(a.id, opts)), true);
    assert.equal(f.polls, 2);
  });

  test("the wait resumes after a restart of the collector", async () => {
    const a = await requestApproval({ ...crmRequest, ...opts });
    const decided = waitForDecision(a.id, opts);
    await until(() => f.polls >= 1);
    await f.restart(300); // connections cut, then refused for 300ms
    f.unavailable = 1; // and it refuses once more, starting up
    f.retryAfter = "";
    await until(() => f.polls >= 2);
    f.decide(a.id, "approve");
    assert.equal(isApproved(await decided), true);
  });

  test("the signal ends the wait", async () => {
    const a = await requestApproval({ ...crmRequest, ...opts });
    await assert.rejects(waitForDecision(a.id, { ...opts, pollWaitMs: 100, signal: AbortSignal.timeout(350) }), {
      name: "TimeoutError",
    });
    assert.ok(f.polls >= 3, `${f.polls} polls`);
  });

  for (const [decision, status, message] of [
    ["reject", "rejected", `approval apr_0001 rejected by alice@example.com ("ok")`],
    ["expire", "expired", "approval apr_0001 expired at 2026-12-06T08:15:00.123456789Z undecided"],
  ]) {
    test(`${status}: an answer, not an error of the wait`, async () => {
      const a = await requestApproval({ ...crmRequest, ...opts });
      f.decide(a.id, decision);
      const d = await waitForDecision(a.id, opts);
      assert.equal(d.status, status);
      assert.equal(isApproved(d), false);
      const err = decisionError(d);
      assert.ok(err instanceof ApprovalDecisionError);
      assert.equal(err.status, status);
      assert.equal(err.message, message);
    });
  }

  for (const status of [400, 401, 403, 404, 409, 413, 500]) {
    test(`${status} comes back at once as an ApprovalApiError`, async () => {
      f.failWith = status;
      for (const call of [() => requestApproval({ ...crmRequest, ...opts }), () => waitForDecision("apr_0001", opts)]) {
        await assert.rejects(call(), (err) => {
          assert.ok(err instanceof ApprovalApiError);
          assert.equal(err.status, status);
          assert.equal(err.apiMessage, `scripted ${status}`);
          return true;
        });
      }
      assert.equal(f.requests, 2, "no retry");
    });
  }

  test("an unknown id", async () => {
    await assert.rejects(waitForDecision("apr_nope", opts), { status: 404, message: `approval service: 404: no approval "apr_nope"` });
  });

  test("token, environment and the span's trace context", async () => {
    f.token = "agent-secret";
    await assert.rejects(requestApproval({ ...crmRequest, ...opts }), { status: 401 });
    const saved = { ...process.env };
    try {
      process.env.AGENTAUDIT_APPROVALS_URL = f.url;
      process.env.AGENTAUDIT_TOKEN = "agent-secret";
      const span = { spanContext: () => ({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7" }) };
      const a = await requestApproval({ ...crmRequest, span });
      assert.equal(a.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736", "the request entry is placed in the caller's trace");
      assert.equal(a.span_id, "00f067aa0ba902b7");
    } finally {
      process.env = saved;
    }
  });

  test("null values are sent as null; only the contract's fields are sent", async () => {
    const a = await requestApproval({ ...crmRequest, ...opts, previousValue: undefined, targetResource: "", expiresIn: 900_000 });
    assert.equal(a.previous_value, null);
    assert.equal(a.target_resource, "");
    assert.ok("previous_value" in f.bodies[0] && f.bodies[0].previous_value === null);
    assert.equal(f.bodies[0].expires_in, "900000ms");
    assert.deepEqual(Object.keys(f.bodies[0]).filter((k) => k.includes("url") || k === "signal"), []);
    await assert.rejects(requestApproval({ ...crmRequest, ...opts, proposedValue: 42 }), TypeError);
  });

  test("a key reused for another action is not taken for its approval", async () => {
    await requestApproval({ ...crmRequest, ...opts, idempotencyKey: "step-12" });
    await assert.rejects(requestApproval({ ...crmRequest, ...opts, idempotencyKey: "step-12", proposedValue: "mallory@evil.example" }), {
      message: `the service answered idempotency key "step-12" with approval apr_0001 of another action (its proposed_value differs): is the key reused?`,
    });
  });

  test("a bad base URL is refused at once", async () => {
    for (const baseURL of ["127.0.0.1:4320", "ftp://x", ""]) {
      await assert.rejects(requestApproval({ ...crmRequest, ...opts, baseURL }), TypeError);
    }
  });
});

describe("span attributes", () => {
  const approval = {
    id: "apr_0001", status: "approved", execution_id: "exec_a7f3b2c1", target_system: "HubSpot CRM",
    target_resource: "Contact #48291 (email field)", proposed_value: "jane@newdomain.com", previous_value: "jane@olddomain.com",
  };

  test("writeAttributes: the approved write, exactly", () => {
    assert.deepEqual(writeAttributes(approval), {
      "audit.action.type": "write",
      "audit.execution.id": "exec_a7f3b2c1",
      "audit.target.system": "HubSpot CRM",
      "audit.target.resource": "Contact #48291 (email field)",
      "audit.value.proposed": "jane@newdomain.com",
      "audit.value.previous": "jane@olddomain.com",
      "audit.approval.id": "apr_0001",
    });
    assert.equal("audit.value.previous" in writeAttributes({ ...approval, previous_value: null }), false, "null stays absent");
  });

  test("attach sets audit.approval.id", () => {
    const set = {};
    const span = { setAttribute: (k, v) => (set[k] = v) };
    assert.equal(attach(span, approval), span);
    assert.deepEqual(set, { "audit.approval.id": "apr_0001" });
  });
});

async function until(cond, timeoutMs = 5000) {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${cond}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
