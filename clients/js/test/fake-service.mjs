// A fake of the agent's side of the approval service's API
// (docs/APPROVALS.md): POST /v1/approvals with idempotency keys, long
// polls of GET /v1/approvals/{id}?wait= woken by a decision, unknown
// fields refused, errors as {"error": ...}, faults scripted by the test.
// The real service is tested end to end in e2e.
import http from "node:http";

const requestFields = new Set([
  "execution_id", "target_system", "target_resource", "proposed_value", "previous_value", "reasoning", "tool",
  "agent_id", "agent_name", "service_name", "principal", "trace_id", "span_id", "expires_in", "idempotency_key",
]);

export class FakeService {
  constructor() {
    this.token = ""; // when set, the bearer token required
    this.approvals = new Map(); // id → {body, waiters}
    this.byKey = new Map();
    this.n = 0;
    this.requests = 0;
    this.posts = 0;
    this.polls = 0;
    this.keys = []; // idempotency key of each POST received
    this.waits = []; // wait of each GET received
    this.bodies = []; // each POST's body
    // Faults, each consumed as it fires.
    this.unavailable = 0; // answer the next this many requests 503
    this.retryAfter = "1";
    this.cutPost = 0; // create, then cut the connection, this many times
    this.cutPoll = []; // cut these polls (1-based) mid-poll
    this.failWith = 0; // answer every request with this status
    this.approveAt = 0; // the poll during which the approval is approved
    this.sockets = new Set();
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(port = 0) {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on("connection", (s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    await new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, "127.0.0.1", resolve);
    });
    this.port = this.server.address().port;
    return this;
  }

  // stop closes the listener and every connection, as a collector that
  // exits does.
  async stop() {
    if (!this.server) return;
    const closed = new Promise((resolve) => this.server.close(resolve));
    for (const s of this.sockets) s.destroy();
    await closed;
    this.server = null;
  }

  // restart stops and starts again on the same port after downMs,
  // keeping the approvals (the real service keeps them on disk).
  async restart(downMs) {
    await this.stop();
    await new Promise((r) => setTimeout(r, downMs));
    await this.start(this.port);
  }

  async handle(req, res) {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const raw = Buffer.concat(chunks).toString();
    this.requests++;
    if (req.method === "POST") {
      try {
        this.keys.push(JSON.parse(raw).idempotency_key);
      } catch {
        this.keys.push(undefined);
      }
    }
    if (this.token && req.headers.authorization !== `Bearer ${this.token}`) {
      return json(res, 401, { error: "no valid bearer token" });
    }
    if (this.failWith) return json(res, this.failWith, { error: `scripted ${this.failWith}` });
    if (this.unavailable > 0) {
      this.unavailable--;
      if (this.retryAfter) res.setHeader("retry-after", this.retryAfter);
      return json(res, 503, { error: "the spool is full" });
    }
    const url = new URL(req.url, "http://x");
    if (req.method === "POST" && url.pathname === "/v1/approvals") return this.post(req, res, raw);
    const m = /^\/v1\/approvals\/([^/]+)$/.exec(url.pathname);
    if (req.method === "GET" && m) return this.get(req, res, decodeURIComponent(m[1]), url);
    return json(res, 404, { error: `no such endpoint: ${req.method} ${url.pathname}` });
  }

  post(req, res, raw) {
    if (!(req.headers["content-type"] ?? "").startsWith("application/json")) {
      return json(res, 415, { error: "send application/json" });
    }
    let body;
    try {
      body = JSON.parse(raw);
    } catch (err) {
      return json(res, 400, { error: String(err) });
    }
    this.bodies.push(body);
    for (const [k, v] of Object.entries(body)) {
      if (!requestFields.has(k)) return json(res, 400, { error: `unknown field ${JSON.stringify(k)}` });
      if (v !== null && typeof v !== "string") return json(res, 400, { error: `${k} is not a string` });
    }
    for (const k of ["execution_id", "target_system"]) {
      if (!body[k]) return json(res, 400, { error: `"${k}" is required` });
    }
    if (typeof body.target_resource !== "string") return json(res, 400, { error: `"target_resource" is required` });
    this.posts++;
    const key = body.idempotency_key;
    if (key && this.byKey.has(key)) return json(res, 200, this.approvals.get(this.byKey.get(key)).body);
    const id = `apr_${String(++this.n).padStart(4, "0")}`;
    const a = {
      id, status: "pending", requester: null, policy: null,
      requested_at: "2026-12-06T08:00:00.123456789Z", expires_at: "2026-12-06T08:15:00.123456789Z",
      request: { chain_id: "c1", seq: this.n, entry_hash: this.n.toString(16).padStart(64, "0") },
      decision: null, checkpoint: null, trace_id: "", span_id: "",
    };
    for (const [k, v] of Object.entries(body)) if (k !== "idempotency_key" && k !== "expires_in") a[k] = v;
    this.approvals.set(id, { body: a, waiters: [] });
    if (key) this.byKey.set(key, id);
    if (this.cutPost > 0) {
      this.cutPost--;
      return req.socket.destroy();
    }
    res.setHeader("location", `/v1/approvals/${id}`);
    return json(res, 201, a);
  }

  async get(req, res, id, url) {
    const wait = url.searchParams.get("wait") ?? "";
    this.waits.push(wait);
    const waitMs = parseWait(wait);
    if (waitMs === null || waitMs > 60_000) return json(res, 400, { error: `wait ${JSON.stringify(wait)}` });
    const a = this.approvals.get(id);
    if (!a) return json(res, 404, { error: `no approval "${id}"` });
    const n = ++this.polls;
    if (n === this.approveAt) {
      // A reviewer decides while the poll is held: the decision wakes it.
      setTimeout(() => a.body.status === "pending" && this.decide(id, "approve"), 10);
    }
    if (this.cutPoll[0] === n) {
      this.cutPoll.shift();
      await new Promise((r) => setTimeout(r, waitMs / 4));
      return req.socket.destroy();
    }
    if (a.body.status === "pending" && waitMs > 0) {
      await new Promise((resolve) => {
        const t = setTimeout(resolve, waitMs);
        a.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
        req.socket.once("close", resolve);
      });
    }
    if (!res.destroyed) json(res, 200, a.body);
  }

  // decide decides approval id (approve, reject or expire) and wakes its polls.
  decide(id, decision) {
    const a = this.approvals.get(id);
    a.body = {
      ...a.body,
      status: { approve: "approved", reject: "rejected", expire: "expired" }[decision],
      decision: {
        decision, approver: decision === "expire" ? null : "alice@example.com", auto: false, comment: "ok",
        decided_at: "2026-12-06T08:05:00Z", chain_id: "c1", seq: 99, entry_hash: "d".repeat(64),
      },
    };
    for (const w of a.waiters.splice(0)) w();
  }
}

function json(res, status, v) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(`${JSON.stringify(v)}\n`);
}

// parseWait reads the Go durations the client sends ("30000ms", "30s").
function parseWait(v) {
  if (v === "") return 0;
  const m = /^(\d+)(ms|s)$/.exec(v);
  if (!m) return null;
  return Number(m[1]) * (m[2] === "s" ? 1000 : 1);
}
