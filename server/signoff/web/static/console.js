// The signoff console: an ES module with no dependencies and no build step.
//
// It calls the Connect API of the page's own origin (POST /signoff.v1.<Service>/<Method>)
// with the session cookie and the session's CSRF header, so what a person may see and do
// is exactly what the API allows their principal. Streams (WatchApprovals, WatchInstance)
// are Connect server streams read with fetch. Every value from the API is put in the page
// with textContent, never as HTML.

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";
const CSRF = meta("signoff-csrf");
const CSRF_HEADER = meta("signoff-csrf-header");
const ME = JSON.parse(meta("signoff-identity") || "{}");

// -- the API ---------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(code, message, reason = "", metadata = {}) {
    super(message);
    this.code = code;
    this.reason = reason;
    this.metadata = metadata;
  }
}

// google.rpc.ErrorInfo from its protobuf bytes: reason (1), domain (2), metadata (3, map).
function readVarint(bytes, at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = bytes[at.i++];
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return value;
    shift += 7;
  }
}

function readFields(bytes) {
  const fields = [];
  const at = { i: 0 };
  while (at.i < bytes.length) {
    const key = readVarint(bytes, at);
    const wire = key & 7;
    if (wire === 2) {
      const length = readVarint(bytes, at);
      fields.push([key >> 3, bytes.subarray(at.i, at.i + length)]);
      at.i += length;
    } else if (wire === 0) {
      readVarint(bytes, at);
    } else {
      break; // ErrorInfo has no other wire types
    }
  }
  return fields;
}

function errorInfo(details) {
  const text = new TextDecoder();
  for (const detail of details ?? []) {
    if (detail.type !== "google.rpc.ErrorInfo") continue;
    const b64 = detail.value.replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64 + "===".slice((b64.length + 3) % 4)), (c) =>
      c.charCodeAt(0),
    );
    let reason = "";
    const metadata = {};
    for (const [field, value] of readFields(bytes)) {
      if (field === 1) reason = text.decode(value);
      if (field === 3) {
        const entry = Object.fromEntries(readFields(value).map(([f, v]) => [f, text.decode(v)]));
        metadata[entry[1] ?? ""] = entry[2] ?? "";
      }
    }
    return { reason, metadata };
  }
  return { reason: "", metadata: {} };
}

function apiError(body, status) {
  const { reason, metadata } = errorInfo(body?.details);
  return new ApiError(body?.code ?? `http_${status}`, body?.message ?? `HTTP ${status}`, reason, metadata);
}

function signInAgain() {
  const next = location.pathname + location.search;
  location.assign(`/signin?next=${encodeURIComponent(next)}`);
}

const HEADERS = { "connect-protocol-version": "1", [CSRF_HEADER]: CSRF };

export async function call(method, request) {
  const response = await fetch(`/signoff.v1.${method}`, {
    method: "POST",
    headers: { ...HEADERS, "content-type": "application/json" },
    body: JSON.stringify(request),
    credentials: "same-origin",
  });
  const body = await response.json().catch(() => ({}));
  if (response.ok) return body;
  const error = apiError(body, response.status);
  if (error.code === "unauthenticated") signInAgain();
  throw error;
}

// A Connect server stream: yields each message; throws the stream's error.
export async function* stream(method, request, signal) {
  const payload = new TextEncoder().encode(JSON.stringify(request));
  const envelope = new Uint8Array(5 + payload.length);
  new DataView(envelope.buffer).setUint32(1, payload.length);
  envelope.set(payload, 5);
  const response = await fetch(`/signoff.v1.${method}`, {
    method: "POST",
    headers: { ...HEADERS, "content-type": "application/connect+json" },
    body: envelope,
    credentials: "same-origin",
    signal,
  });
  if (!response.ok) {
    const error = apiError(await response.json().catch(() => ({})), response.status);
    if (error.code === "unauthenticated") signInAgain();
    throw error;
  }
  const reader = response.body.getReader();
  const text = new TextDecoder();
  let buffer = new Uint8Array(0);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    const joined = new Uint8Array(buffer.length + value.length);
    joined.set(buffer);
    joined.set(value, buffer.length);
    buffer = joined;
    while (buffer.length >= 5) {
      const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.length);
      const flags = view.getUint8(0);
      const length = view.getUint32(1);
      if (buffer.length < 5 + length) break;
      const message = JSON.parse(text.decode(buffer.subarray(5, 5 + length)) || "{}");
      buffer = buffer.slice(5 + length);
      if (flags & 0x02) {
        if (message.error) {
          const error = apiError(message.error, 200);
          if (error.code === "unauthenticated") signInAgain();
          throw error;
        }
        return;
      }
      yield message;
    }
  }
}

// Follows a stream forever: on a dropped connection it resumes from the last position
// (`resume(message)` returns the next request), with a growing pause between attempts.
async function follow(method, request, resume, onMessage, onState) {
  let pause = 500;
  for (;;) {
    try {
      onState?.("live");
      for await (const message of stream(method, request)) {
        pause = 500;
        request = resume(request, message);
        onMessage(message);
      }
      return; // ended by the server (an instance's terminal event)
    } catch (error) {
      if (error instanceof ApiError && !["unavailable", "internal", "unknown", "canceled", "deadline_exceeded"].includes(error.code) && !error.code.startsWith("http_")) {
        onState?.(`stopped: ${error.message}`);
        return;
      }
      onState?.("reconnecting…");
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(pause * 2, 10_000);
    }
  }
}

// -- small helpers ---------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const short = (value, prefix) => String(value ?? "").replace(prefix, "").replaceAll("_", " ").toLowerCase();
const riskName = (risk) => short(risk, "RISK_CLASS_");
const stateName = (state) => short(state, /^(ACTION|INSTANCE|GATE)_STATE_/);
const eventName = (type) => short(type, "EVENT_TYPE_");

function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

const when = (time) => (time ? new Date(time).toLocaleString() : "");
const pretty = (value) => JSON.stringify(value ?? {}, null, 2);

function setStatus(node, text, kind = "") {
  node.textContent = text;
  node.className = `status ${kind}`;
}

function debounce(fn, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

async function pending(tenant) {
  const actions = [];
  let token = "";
  for (let page = 0; page < 20; page++) {
    const answer = await call("ApprovalService/ListPendingApprovals", {
      tenantId: tenant,
      pageSize: 1000,
      pageToken: token,
    });
    actions.push(...(answer.actions ?? []));
    token = answer.nextPageToken ?? "";
    if (!token) break;
  }
  return actions;
}

// -- the inbox -------------------------------------------------------------------------

function oneLine(params) {
  const text = Object.entries(params ?? {}).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(", ");
  return text.length > 80 ? `${text.slice(0, 79)}…` : text;
}

function quorum(gate) {
  return `${gate.approvals ?? 0}/${gate.quorum ?? 1}${gate.rejections ? `, ${gate.rejections} against` : ""}`;
}

async function inbox(main) {
  const params = new URLSearchParams(location.search);
  const fixedTenant = ME.tenant && ME.tenant !== "*" ? ME.tenant : "";
  const filters = {
    tenant: fixedTenant || params.get("tenant") || "",
    gate: params.get("gate") || "",
    tool: params.get("tool") || "",
    risk: params.get("risk") || "",
  };
  const live = el("span", { class: "status", id: "live" }, "connecting…");
  const tenantInput = el("input", {
    id: "filter-tenant", value: filters.tenant, placeholder: "every tenant", disabled: !!fixedTenant,
  });
  const selects = {
    gate: el("select", { id: "filter-gate" }),
    tool: el("select", { id: "filter-tool" }),
    risk: el("select", { id: "filter-risk" }),
  };
  const counts = el("div", { class: "counts", id: "gate-counts" });
  const body = el("tbody", { id: "inbox-rows" });
  const empty = el("p", { class: "muted", id: "inbox-empty", hidden: true }, "Nothing waits for you.");
  main.replaceChildren(
    el("div", { class: "title" }, el("h1", {}, "Waiting for you"), live),
    el("form", { class: "filters", id: "filters" },
      el("label", {}, "Tenant", tenantInput),
      el("label", {}, "Gate", selects.gate),
      el("label", {}, "Tool", selects.tool),
      el("label", {}, "Risk", selects.risk),
    ),
    counts,
    el("table", { class: "inbox" },
      el("thead", {}, el("tr", {},
        ["Waiting", "Tool", "Params", "Risk", "Gates", "Tenant"].map((h) => el("th", {}, h)))),
      body),
    empty,
  );

  let actions = [];
  const render = () => {
    const options = (key, values) => {
      const select = selects[key];
      const chosen = filters[key];
      select.replaceChildren(
        el("option", { value: "" }, "all"),
        ...[...new Set([...values, chosen].filter(Boolean))].sort().map((v) =>
          el("option", { value: v, selected: v === chosen }, key === "risk" ? riskName(v) : v)),
      );
    };
    options("gate", actions.flatMap((a) => a.gateIds ?? []));
    options("tool", actions.map((a) => a.tool));
    options("risk", actions.map((a) => a.riskClass));
    const shown = actions
      .filter((a) => !filters.gate || (a.gateIds ?? []).includes(filters.gate))
      .filter((a) => !filters.tool || a.tool === filters.tool)
      .filter((a) => !filters.risk || a.riskClass === filters.risk)
      .sort((a, b) => String(a.createTime).localeCompare(String(b.createTime)));
    const perGate = new Map();
    for (const a of shown) for (const g of a.gateIds ?? []) perGate.set(g, (perGate.get(g) ?? 0) + 1);
    counts.replaceChildren(
      el("span", { class: "count total" }, `${shown.length} waiting`),
      ...[...perGate].sort().map(([g, n]) => el("span", { class: "count", "data-gate": g }, `${g} · ${n}`)),
    );
    const now = Date.now();
    body.replaceChildren(...shown.map((a) => {
      const query = new URLSearchParams({ tenant: a.tenantId, instance: a.instanceId });
      const href = `/actions/${encodeURIComponent(a.actionId)}?${query}`;
      return el("tr", { "data-action-id": a.actionId },
        el("td", { class: "age" }, duration(now - Date.parse(a.createTime))),
        el("td", {}, el("a", { href, class: "tool" }, a.tool)),
        el("td", { class: "params mono" }, oneLine(a.params)),
        el("td", {}, el("span", { class: `risk ${short(a.riskClass, "RISK_CLASS_").replace(" ", "-")}` }, riskName(a.riskClass))),
        el("td", {}, (a.gates ?? []).filter((g) => g.state === "GATE_STATE_WAITING").map((g) =>
          el("span", { class: "gate" }, `${g.gateId} ${quorum(g)}`))),
        el("td", {}, a.tenantId),
      );
    }));
    empty.hidden = shown.length > 0;
  };

  const load = async () => {
    try {
      actions = await pending(filters.tenant);
      render();
    } catch (error) {
      setStatus(live, error.message, "error");
    }
  };

  const sync = () => {
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    history.replaceState(null, "", query.size ? `/?${query}` : "/");
  };
  for (const [key, select] of Object.entries(selects)) {
    select.addEventListener("change", () => { filters[key] = select.value; sync(); render(); });
  }
  tenantInput.addEventListener("change", () => {
    filters.tenant = tenantInput.value.trim();
    sync();
    location.reload();
  });

  await load();
  setInterval(render, 15_000); // the ages
  const reload = debounce(load, 100);
  // Live: one WatchApprovals per tenant in view; every change reloads the list, so what
  // is shown always follows ListPendingApprovals' rules (eligibility, separation of duties).
  const watched = new Set();
  const watch = (tenant) => {
    if (watched.has(tenant)) return;
    watched.add(tenant);
    const key = `signoff.cursor.${tenant}`;
    const start = Number(sessionStorage.getItem(key) ?? 0);
    follow(
      "ApprovalService/WatchApprovals",
      { tenantId: tenant, afterCursor: String(start) },
      (request, message) => {
        const cursor = message.change?.cursor ?? message.bookmarkCursor;
        if (message.bookmarkCursor !== undefined && Number(message.bookmarkCursor) < start) {
          // The server is behind the cursor this tab kept (a new database): start over.
          sessionStorage.removeItem(key);
          location.reload();
        }
        if (cursor) sessionStorage.setItem(key, String(cursor));
        return { ...request, afterCursor: String(cursor ?? request.afterCursor) };
      },
      (message) => {
        if (message.change) reload();
        else setStatus(live, "live", "ok");
      },
      (state) => setStatus(live, state, state === "live" ? "ok" : "warn"),
    );
  };
  if (filters.tenant) {
    watch(filters.tenant);
    return;
  }
  // A platform principal without a tenant filter follows the tenants it has seen, and
  // looks for new ones every half minute (their changes are live from then on).
  const tenantsInView = () => actions.forEach((a) => watch(a.tenantId));
  tenantsInView();
  if (watched.size === 0) setStatus(live, "live for tenants with waiting actions", "ok");
  setInterval(async () => {
    await load();
    tenantsInView();
  }, 30_000);
}

// -- the action page -------------------------------------------------------------------

function section(title, id, ...children) {
  return el("section", { class: "card", id }, el("h2", {}, title), ...children);
}

function dl(pairs) {
  return el("dl", {}, pairs.filter(([, v]) => v !== undefined && v !== "").flatMap(([k, v]) =>
    [el("dt", {}, k), el("dd", {}, v)]));
}

// A line diff of two pretty-printed JSON texts (longest common subsequence).
function lineDiff(before, after) {
  const a = before.split("\n");
  const b = after.split("\n");
  const table = Array.from({ length: a.length + 1 }, () => new Array(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--)
    for (let j = b.length - 1; j >= 0; j--)
      table[i][j] = a[i] === b[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
  const lines = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) lines.push([" ", a[i++], j++]);
    else if (j < b.length && (i >= a.length || table[i][j + 1] >= table[i + 1][j])) lines.push(["+", b[j++]]);
    else lines.push(["-", a[i++]]);
  }
  return lines;
}

async function actionPage(main) {
  const actionId = decodeURIComponent(location.pathname.split("/").pop());
  const params = new URLSearchParams(location.search);
  const tenant = ME.tenant && ME.tenant !== "*" ? ME.tenant : params.get("tenant") || "";
  let instanceId = params.get("instance") || "";

  const live = el("span", { class: "status", id: "live" }, "loading…");
  const summary = el("div", { id: "summary" });
  const decide = el("div", { id: "decide" });
  const gates = el("div", { id: "gates" });
  const why = el("div", { id: "why" });
  const timeline = el("ol", { class: "timeline", id: "timeline" });
  const record = el("div", { id: "record" }, el("p", { class: "muted" }, "The record appears once the action is decided."));
  main.replaceChildren(
    el("div", { class: "title" }, el("h1", { id: "action-title" }, actionId), live),
    el("div", { class: "columns" },
      el("div", { class: "left" },
        section("Action", "action-card", summary),
        section("Policy", "policy-card", why),
        section("Record", "record-card", record)),
      el("div", { class: "right" },
        section("Decide", "decide-card", decide),
        section("Gates", "gates-card", gates),
        section("Timeline", "timeline-card", timeline))),
  );

  let action = null; // the action as ListPendingApprovals shows it (while it waits for me)
  let policy = null; // GetPolicy: the gates' definitions
  let decided = null; // the ACTION_DECIDED (or expired, cancelled) event, once there is one
  let lastRecord = null; // the record a vote of mine returned
  let lastVote = null; // the answer to a vote of mine
  const events = [];

  const findAction = async () => {
    const found = (await pending(tenant)).find((a) => a.actionId === actionId) ?? null;
    action = found;
    if (found) instanceId = found.instanceId;
  };

  const renderSummary = (instance) => {
    const input = instance?.input ?? {};
    const requested = events.find((e) => e.actionId === actionId && e.type === "EVENT_TYPE_ACTION_REQUESTED");
    const tool = action?.tool ?? requested?.tool;
    if (tool) document.getElementById("action-title").textContent = tool;
    summary.replaceChildren(
      dl([
        ["Action", el("span", { class: "mono" }, actionId)],
        ["Tool", el("span", { class: "mono", id: "action-tool" }, action?.tool ?? requested?.tool ?? "")],
        ["Risk", action ? el("span", { class: `risk ${short(action.riskClass, "RISK_CLASS_").replace(" ", "-")}` }, riskName(action.riskClass)) : ""],
        ["State", el("span", { id: "action-state" }, decided ? stateName(decided.actionState) : action ? stateName(action.state) : "not waiting for you")],
        ["Agent", instance?.agent?.agentId ?? ""],
        ["User", instance?.user?.userId ?? ""],
        ["Intent", input.intent ?? ""],
        ["Message", input.message ?? ""],
        ["Tenant", instance?.tenantId ?? tenant],
        ["Instance", el("span", { class: "mono" }, instanceId)],
        ["Evidence", action?.evidenceRefs?.length ? el("ul", {}, action.evidenceRefs.map((r) => el("li", { class: "mono" }, r))) : ""],
        ["Action sha256", action ? el("code", { id: "action-sha256", class: "hash" }, action.actionSha256) : ""],
      ]),
      action ? el("h3", {}, "Params") : "",
      action ? el("pre", { id: "action-params", class: "json" }, pretty(action.params)) : "",
      input.context ? el("details", {}, el("summary", {}, "Request context"), el("pre", { class: "json" }, pretty(input.context))) : "",
    );
  };

  const renderGates = () => {
    const definitions = new Map((policy?.gates ?? []).map((g) => [g.gateId, g]));
    const votes = events.filter((e) => e.actionId === actionId && (e.type === "EVENT_TYPE_ACTION_VOTED" || e.type === "EVENT_TYPE_ACTION_DECIDED"));
    const statuses = action?.gates ?? [];
    if (!statuses.length) {
      gates.replaceChildren(el("p", { class: "muted" }, decided ? `Settled: ${stateName(decided.actionState)}.` : "No gate of this action waits for you."));
    } else {
      gates.replaceChildren(...statuses.map((g) => {
        const d = definitions.get(g.gateId) ?? {};
        const deadline = g.deadline ? Date.parse(g.deadline) : 0;
        const then = d.onTimeout === "escalate" ? `escalates to ${d.escalateTo}` : "rejects";
        return el("div", { class: "gate-status", "data-gate": g.gateId },
          el("h3", {}, g.gateId, " ", el("span", { class: `state ${stateName(g.state)}` }, stateName(g.state))),
          d.description ? el("p", { class: "muted" }, d.description) : "",
          el("progress", { max: g.quorum || 1, value: g.approvals ?? 0 }),
          el("p", { class: "quorum" }, `${g.approvals ?? 0} of ${g.quorum || 1} approvals`, g.rejections ? `, ${g.rejections} rejections` : ""),
          deadline ? el("p", { class: "deadline", "data-deadline": String(deadline), "data-then": then }) : "",
        );
      }));
    }
    if (votes.length) {
      gates.append(el("h3", {}, "Votes"), el("ul", { class: "votes", id: "votes" }, votes.map((v) =>
        el("li", {}, el("strong", {}, v.actor), " ",
          v.type === "EVENT_TYPE_ACTION_DECIDED" ? `settled it: ${stateName(v.actionState)}` : `voted on ${v.gateId}`,
          v.reason ? ` — “${v.reason}”` : ""))));
    }
    tick();
  };

  const tick = () => {
    for (const node of gates.querySelectorAll("[data-deadline]")) {
      const left = Number(node.dataset.deadline) - Date.now();
      node.textContent = left > 0 ? `${duration(left)} left, then it ${node.dataset.then}` : `deadline passed: it ${node.dataset.then}`;
    }
  };
  setInterval(tick, 1000);

  const renderWhy = async () => {
    const requested = events.find((e) => e.actionId === actionId && e.type === "EVENT_TYPE_ACTION_REQUESTED");
    const rules = requested?.controls?.policy?.ruleIds ?? [];
    const parts = [
      el("p", {}, "Matched when requested: ", rules.length ? rules.map((r) => el("code", { class: "rule" }, r)) : el("span", { class: "muted" }, "—")),
      requested?.reason ? el("p", { class: "muted" }, requested.reason) : "",
    ];
    if (action) {
      try {
        const answer = await call("PolicyService/EvaluatePolicy", {
          instanceId, action: proposal(action, action.params),
        });
        parts.push(el("h3", {}, "Why (policy as loaded now)"), findings(answer));
      } catch (error) {
        parts.push(el("p", { class: "muted" }, `Policy explanation unavailable: ${error.message}`));
      }
    }
    why.replaceChildren(...parts);
  };

  const renderTimeline = () => {
    timeline.replaceChildren(...events.map((e) => el("li", { class: e.actionId === actionId ? "mine" : "", "data-type": e.type },
      el("span", { class: "rev" }, `#${e.revision}`), " ",
      el("strong", {}, eventName(e.type)),
      e.tool ? el("span", { class: "mono" }, ` ${e.tool}`) : "",
      e.actor ? ` by ${e.actor}` : "",
      e.gateId ? ` · ${e.gateId}` : "",
      e.actionState && e.actionState !== "ACTION_STATE_UNSPECIFIED" ? ` → ${stateName(e.actionState)}` : "",
      e.reason ? el("div", { class: "muted" }, e.reason) : "",
      el("div", { class: "time" }, when(e.time)))));
  };

  const renderRecord = async () => {
    if (!decided?.recordId && !lastRecord) return;
    const parts = [];
    let shown = lastRecord;
    if (decided?.recordId) {
      try {
        shown = (await call("AuditService/GetDecisionRecord", { recordId: decided.recordId })).record;
      } catch (error) {
        if (!shown) parts.push(el("p", { class: "muted", id: "record-denied" }, `The decision record ${decided.recordId} is open to admins: ${error.message}`));
      }
    }
    if (shown) {
      parts.push(dl([
        ["Record", el("code", { id: "record-id" }, shown.recordId)],
        ["Outcome", el("span", { id: "record-outcome" }, short(shown.outcome, "OUTCOME_"))],
        ["Action sha256", el("code", { class: "hash" }, shown.actionSha256)],
        ["Approvals", el("ul", {}, (shown.approvals ?? []).map((a) => el("li", {}, `${a.approver}: ${short(a.verdict, "VERDICT_")} on ${a.gateId}${a.reason ? ` — “${a.reason}”` : ""}`)))],
      ]), el("details", {}, el("summary", {}, "The whole record"), el("pre", { class: "json" }, pretty(shown))));
    }
    try {
      const chain = await call("AuditService/VerifyChain", { instanceId });
      parts.push(el("p", { id: "chain", class: chain.intact ? "ok" : "error" },
        chain.intact ? `Audit chain intact (head ${String(chain.headHash).slice(0, 16)}…)` : `Audit chain broken: ${chain.problem}`));
    } catch (error) {
      parts.push(el("p", { class: "muted", id: "chain-denied" }, `Chain verification is open to admins: ${error.message}`));
    }
    record.replaceChildren(...parts);
  };

  const renderDecide = () => {
    const mine = lastVote?.action;
    const settled = decided
      ? { state: decided.actionState, by: decided.actor, reason: decided.reason }
      : mine && mine.state !== "ACTION_STATE_WAITING_FOR_HUMAN"
        ? { state: mine.state, by: mine.decidedBy, reason: mine.decisionReason }
        : null;
    if (settled) {
      decide.dataset.key = "settled";
      decide.replaceChildren(el("p", { id: "decided", class: "settled" },
        `Decided: ${stateName(settled.state)}${settled.by ? ` by ${settled.by}` : ""}`,
        settled.reason ? ` — “${settled.reason}”` : ""));
      return;
    }
    // Keep the form (and what the person typed) while the same action waits.
    const key = action ? action.actionSha256 : "not-in-inbox";
    if (decide.dataset.key === key) return;
    decide.dataset.key = key;
    decide.replaceChildren(decisionForm(action, instanceId, actionId, async (answer) => {
      lastVote = answer;
      lastRecord = answer.record ?? null;
      await refresh();
    }));
  };

  const refresh = async () => {
    try {
      await findAction();
    } catch (error) {
      setStatus(live, error.message, "error");
    }
    renderSummary(instance);
    renderGates();
    renderDecide();
    await renderRecord();
  };

  let instance = null;
  try {
    [, policy] = await Promise.all([findAction(), call("PolicyService/GetPolicy", {})]);
    if (instanceId) instance = (await call("ExecutionService/GetInstance", { instanceId })).instance;
  } catch (error) {
    setStatus(live, error.message, "error");
  }
  renderSummary(instance);
  renderGates();
  renderDecide();
  if (!instanceId) {
    setStatus(live, "This action is not waiting for you, and the link names no instance.", "warn");
    return;
  }
  // The instance's events: the timeline, then live votes and decisions.
  const settledTypes = new Set(["EVENT_TYPE_ACTION_DECIDED", "EVENT_TYPE_ACTION_EXPIRED", "EVENT_TYPE_ACTION_CANCELLED"]);
  let replayed = false;
  const onEvent = debounce(refresh, 100);
  // The replay is over at the first bookmark, or once events stop arriving for a moment.
  const caughtUp = () => {
    if (replayed) return;
    replayed = true;
    renderWhy();
    onEvent();
  };
  const quiet = debounce(caughtUp, 300);
  follow(
    "ExecutionService/WatchInstance",
    { instanceId, afterRevision: "0" },
    (request, message) => ({ ...request, afterRevision: String(message.event?.revision ?? message.bookmark?.revision ?? request.afterRevision) }),
    (message) => {
      if (message.bookmark) {
        setStatus(live, "live", "ok");
        caughtUp();
        return;
      }
      const e = message.event;
      events.push(e);
      if (e.actionId === actionId && settledTypes.has(e.type)) decided = e;
      renderTimeline();
      if (!replayed) quiet();
      else if (e.actionId === actionId) onEvent();
    },
    (state) => setStatus(live, state, state === "live" ? "ok" : "warn"),
  );
}

function proposal(action, params) {
  return {
    toolCallId: action.toolCallId,
    tool: action.tool,
    params,
    riskClass: action.riskClass,
    evidenceRefs: action.evidenceRefs ?? [],
    estimatedCostCents: action.estimatedCostCents ?? 0,
  };
}

function findings(answer) {
  return el("div", { class: "findings" },
    el("p", {}, "Effect: ", el("strong", { class: "effect" }, short(answer.effect, "EFFECT_")),
      answer.gateIds?.length ? ` · gates ${answer.gateIds.join(", ")}` : ""),
    el("ul", {}, (answer.findings ?? []).map((f) => el("li", {},
      el("code", { class: "rule" }, f.ruleId), " ", short(f.effect, "EFFECT_"),
      f.gateId ? ` → ${f.gateId}` : "", f.reason ? el("div", { class: "muted" }, f.reason) : ""))),
    answer.error ? el("p", { class: "error" }, answer.error) : "",
  );
}

function explain(error) {
  const m = error.metadata ?? {};
  switch (error.reason) {
    case "ALREADY_DECIDED":
      return `Someone else decided first: ${short(m.winning_verdict, "VERDICT_")} by ${m.winning_approver}.`;
    case "SEPARATION_OF_DUTIES":
      return `You cannot vote on this action (separation of duties): ${error.message}.`;
    case "NOT_ELIGIBLE":
      return `You cannot vote on this action (not an approver of ${m.gates}): ${error.message}.`;
    case "ALREADY_VOTED":
      return `You have already voted on this action: ${error.message}.`;
    case "EVIDENCE_CHANGED":
      return `The action changed since you opened it: reload and review it again. (${error.message})`;
    default:
      return error.message;
  }
}

function decisionForm(action, instanceId, actionId, done) {
  const reason = el("textarea", { id: "reason", rows: 3, placeholder: "Why (recorded with your vote)" });
  const result = el("p", { id: "decision-result", class: "status", role: "status" });
  const original = action ? pretty(action.params) : "";
  const editor = el("textarea", { id: "params-editor", rows: 10, spellcheck: "false", class: "json" }, original);
  const diff = el("pre", { id: "params-diff", class: "diff" });
  const dryRun = el("div", { id: "dry-run-result" });
  let checked = null; // the editor text policy last answered for

  const submit = async (verdict, edited) => {
    const request = {
      actionId,
      verdict,
      reason: reason.value,
      requestId: `console_${crypto.randomUUID()}`,
    };
    if (action?.actionSha256) request.evidenceSnapshotHash = action.actionSha256;
    if (edited !== undefined) request.editedParams = edited;
    for (const b of buttons) b.disabled = true;
    setStatus(result, "submitting…");
    try {
      const answer = await call("ApprovalService/SubmitDecision", request);
      setStatus(result, `Your vote counted: the action is ${stateName(answer.action?.state)}.`, "ok");
      await done(answer);
    } catch (error) {
      setStatus(result, explain(error), "error");
      result.dataset.reason = error.reason;
      for (const b of buttons) b.disabled = false;
    }
  };

  const parsed = () => {
    try {
      const value = JSON.parse(editor.value);
      return value && typeof value === "object" && !Array.isArray(value) ? value : null;
    } catch {
      return null;
    }
  };
  const approveEdited = el("button", { id: "approve-edited", class: "primary", disabled: true, type: "button" }, "Approve with these params");
  const showDiff = () => {
    const value = parsed();
    if (value === null) {
      diff.replaceChildren(el("span", { class: "error" }, "Not a JSON object."));
    } else {
      diff.replaceChildren(...lineDiff(original, pretty(value)).map(([mark, line]) =>
        el("span", { class: mark === "+" ? "add" : mark === "-" ? "del" : "same" }, `${mark} ${line}\n`)));
    }
    approveEdited.disabled = checked !== editor.value || value === null;
  };
  editor.addEventListener("input", showDiff);
  const runDry = el("button", { id: "dry-run", type: "button" }, "Ask policy (dry run)");
  runDry.addEventListener("click", async () => {
    const value = parsed();
    if (value === null) return showDiff();
    const text = editor.value;
    setStatus(dryRun, "asking policy…");
    try {
      const answer = await call("PolicyService/EvaluatePolicy", { instanceId, action: proposal(action, value) });
      dryRun.replaceChildren(findings(answer));
      checked = answer.effect === "EFFECT_DENY" ? null : text;
      if (answer.effect === "EFFECT_DENY") dryRun.append(el("p", { class: "error" }, "Policy would refuse these params."));
    } catch (error) {
      setStatus(dryRun, error.message, "error");
      checked = null;
    }
    showDiff();
  });
  approveEdited.addEventListener("click", () => {
    if (checked === editor.value) submit("VERDICT_APPROVE", parsed());
  });

  const approve = el("button", { id: "approve", class: "primary", type: "button" }, "Approve");
  const reject = el("button", { id: "reject", class: "danger", type: "button" }, "Reject");
  approve.addEventListener("click", () => submit("VERDICT_APPROVE"));
  reject.addEventListener("click", () => submit("VERDICT_REJECT"));
  const buttons = [approve, reject, approveEdited];
  showDiff();
  return el("div", {},
    action ? el("p", { class: "muted" }, "Your vote is bound to ", el("code", { class: "hash" }, action.actionSha256.slice(0, 16) + "…"), " and recorded as ", el("strong", {}, ME.id), ".")
      : el("p", { class: "warn", id: "not-in-inbox" }, "This action is not in your inbox. You may try to vote: signoff answers why it cannot count if so."),
    el("label", { for: "reason" }, "Reason"), reason,
    el("div", { class: "buttons" }, approve, reject),
    action ? el("details", { id: "edit" }, el("summary", {}, "Edit params, then approve"),
      editor, el("h3", {}, "Changes"), diff, el("div", { class: "buttons" }, runDry, approveEdited), dryRun) : "",
    result,
  );
}

// -- start -----------------------------------------------------------------------------

const who = document.getElementById("who");
if (who && ME.id) who.textContent = `${ME.id}${ME.tenant === "*" ? "" : ` · ${ME.tenant}`}${ME.admin ? " · admin" : ""}`;
const main = document.getElementById("main");
const page = document.body.dataset.page;
if (page === "inbox") inbox(main);
else if (page === "action") actionPage(main);
