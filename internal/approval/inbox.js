// The reviewers' inbox: every read and decision goes through the API with
// the reviewer's token. Data is only ever set as text, never as HTML.
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const store = window.sessionStorage;
  let view = "pending";
  let busy = false;

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function status(msg) { $("#status").textContent = msg || ""; }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + store.getItem("agentaudit.token") };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await res.json().catch(() => ({}));
    if (res.status === 401) { signOut("Your token was refused: sign in again."); throw new Error("unauthenticated"); }
    if (!res.ok) throw new Error(data.error || res.status + " " + res.statusText);
    return data;
  }

  function value(v) { return v === null || v === undefined ? el("span", { class: "null" }, "(none)") : v; }

  function card(a) {
    const d = a.decision;
    const c = el("article", { class: "approval", "data-id": a.id, "data-status": a.status },
      el("h2", {}, a.target_system, " · ", a.target_resource || "(no resource)", " ",
        el("span", { class: "badge " + a.status }, a.status)),
      el("div", { class: "meta" }, "approval ", el("code", {}, a.id), " · requested ", a.requested_at,
        " by ", a.requester || "(unauthenticated)", " · expires ", a.expires_at),
      el("div", { class: "change" },
        el("pre", { class: "previous" }, value(a.previous_value)), el("span", {}, "→"),
        el("pre", { class: "proposed" }, value(a.proposed_value))),
      el("dl", {},
        el("dt", {}, "reasoning"), el("dd", { class: "reasoning" }, value(a.reasoning)),
        el("dt", {}, "execution"), el("dd", {}, el("code", {}, a.execution_id)),
        el("dt", {}, "agent"), el("dd", {}, [a.agent_name, a.agent_id, a.service_name].filter(Boolean).join(" · ") || "(not named)"),
        el("dt", {}, "on behalf of"), el("dd", {}, value(a.principal)),
        el("dt", {}, "tool"), el("dd", {}, value(a.tool)),
        el("dt", {}, "policy"), el("dd", {}, value(a.policy)),
        el("dt", {}, "request entry"), el("dd", {}, el("code", {}, a.request.chain_id + "#" + a.request.seq + " " + a.request.entry_hash))));
    if (d) {
      c.append(el("dl", { class: "decision" },
        el("dt", {}, "decision"), el("dd", {}, d.decision, d.auto ? " (automatic)" : ""),
        el("dt", {}, "by"), el("dd", { class: "approver" }, value(d.approver)),
        el("dt", {}, "comment"), el("dd", {}, value(d.comment)),
        el("dt", {}, "at"), el("dd", {}, d.decided_at),
        el("dt", {}, "decision entry"), el("dd", {}, el("code", {}, d.chain_id + "#" + d.seq + " " + d.entry_hash)),
        el("dt", {}, "checkpoint"), el("dd", {}, a.checkpoint ? el("pre", {}, a.checkpoint) : "not yet sealed")));
    }
    const tl = el("details", { class: "context" }, el("summary", {}, "The run so far"));
    tl.addEventListener("toggle", () => { if (tl.open && !tl.dataset.loaded) loadContext(a.id, tl); });
    c.append(tl);
    if (a.status === "pending") {
      const comment = el("textarea", { class: "comment", placeholder: "Comment (recorded in the trail)" });
      const approve = el("button", { class: "approve", type: "button" }, "Approve");
      const reject = el("button", { class: "reject", type: "button" }, "Reject");
      approve.addEventListener("click", () => decide(a.id, "approve", comment.value, c));
      reject.addEventListener("click", () => decide(a.id, "reject", comment.value, c));
      c.append(comment, el("div", { class: "actions" }, approve, reject));
    }
    return c;
  }

  async function loadContext(id, box) {
    try {
      const { timeline } = await api("GET", "/v1/approvals/" + encodeURIComponent(id) + "/context");
      box.dataset.loaded = "1";
      const rows = timeline.map((t) => el("tr", {},
        el("td", {}, t.time), el("td", {}, t.action_type), el("td", {}, t.target_system),
        el("td", {}, t.target_resource), el("td", {}, t.result), el("td", {}, t.agent_name || "")));
      box.append(timeline.length === 0 ? el("p", {}, "This collector recorded nothing else of this run since it started.") :
        el("table", { class: "timeline" },
          el("thead", {}, el("tr", {}, ...["time", "action", "target", "resource", "result", "agent"].map((h) => el("th", {}, h)))),
          el("tbody", {}, ...rows)));
    } catch (e) { status(e.message); }
  }

  async function decide(id, decision, comment, c) {
    if (busy) return;
    busy = true;
    c.querySelectorAll("button").forEach((b) => (b.disabled = true));
    try {
      await api("POST", "/v1/approvals/" + encodeURIComponent(id) + "/decision", { decision, comment });
      status("");
      document.activeElement.blur();
      await refresh();
    } catch (e) {
      status(e.message);
      c.querySelectorAll("button").forEach((b) => (b.disabled = false));
    } finally { busy = false; }
  }

  async function refresh() {
    if (!store.getItem("agentaudit.token")) return;
    const states = view === "pending" ? ["pending"] : ["approved", "rejected", "expired"];
    try {
      const lists = await Promise.all(states.map((s) => api("GET", "/v1/approvals?status=" + s + "&limit=200")));
      const all = lists.flatMap((l) => l.approvals).sort((a, b) => (a.requested_at < b.requested_at ? 1 : -1));
      const list = $("#list");
      // The cards are rebuilt only when what they show changed, so that a
      // comment being typed, an open timeline or an element a reviewer is
      // about to click stays as it is.
      const shown = view + "|" + all.map((a) => [a.id, a.status, a.decision ? a.decision.entry_hash : "", a.checkpoint ? 1 : 0].join(",")).join(";");
      if (shown === list.dataset.shown) return;
      const typing = document.activeElement && document.activeElement.classList.contains("comment");
      if (typing && view === "pending" && list.dataset.shown && list.dataset.shown.startsWith("pending|")) {
        // Keep the comment: only a decided card goes, new ones come at the next quiet refresh.
        return;
      }
      list.replaceChildren(...(all.length ? all.map(card) : [el("p", { class: "empty" }, view === "pending" ? "Nothing waits for a decision." : "Nothing decided yet.")]));
      list.dataset.shown = shown;
      list.dataset.loaded = view;
    } catch (e) { if (e.message !== "unauthenticated") status(e.message); }
  }

  function signOut(msg) {
    store.removeItem("agentaudit.token");
    $("#signin-form").hidden = false;
    $("#signout").hidden = true;
    $("#list").replaceChildren();
    delete $("#list").dataset.shown;
    status(msg);
  }

  function show(v) {
    view = v;
    delete $("#list").dataset.shown;
    $("#tab-pending").setAttribute("aria-pressed", String(v === "pending"));
    $("#tab-decided").setAttribute("aria-pressed", String(v === "decided"));
    refresh();
  }

  $("#signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    store.setItem("agentaudit.token", $("#token").value.trim());
    $("#token").value = "";
    $("#signin-form").hidden = true;
    $("#signout").hidden = false;
    status("");
    refresh();
  });
  $("#signout").addEventListener("click", () => signOut(""));
  $("#tab-pending").addEventListener("click", () => show("pending"));
  $("#tab-decided").addEventListener("click", () => show("decided"));
  if (store.getItem("agentaudit.token")) { $("#signin-form").hidden = true; $("#signout").hidden = false; refresh(); }
  else $("#signin-form").hidden = false;
  setInterval(refresh, 3000);
})();
