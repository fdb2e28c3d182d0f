// The auditors' web view: reads /audit/summary.json (the log verified by the
// service's verifier and summed) and shows it. Text only (textContent):
// certificate subjects come from clients and are never read as markup.
"use strict";

const CATEGORIES = {
  keys: ["share_submitted", "unseal", "unseal_failed", "seal", "shares_discarded",
    "operation_proposed", "operation_approval", "operation_executed", "operation_failed",
    "operation_cancelled", "operation_expired", "key_renewed", "renewal_due",
    "project_key_created", "project_key_destroyed", "resharing"],
  batches: ["batch_start", "batch_end", "project_result_fetched", "project_result_erased"],
  refusals: ["request_refused", "connection_refused"],
  guard: ["quota_exceeded", "sweep_suspected", "guard_released"],
  log: ["checkpoint", "audit_read", "audit_probe", "audit_repaired", "audit_resumed"],
  service: ["service_start", "service_stop", "config_reloaded", "config_reload_refused"],
};

const $ = (sel) => document.querySelector(sel);
const byTest = (id) => document.querySelector(`[data-testid="${id}"]`);

function setText(id, text, cls) {
  const el = byTest(id);
  el.textContent = String(text);
  if (cls) el.className = cls;
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
}

function sum(rows, field) {
  return rows.reduce((n, r) => n + (r[field] || 0), 0);
}

function show(s) {
  $("#ceremony").textContent = s.ceremony_id;
  $("#service").textContent = s.sealed ? "sealed" : `unsealed, generation ${s.generation}`;
  $("#generated").textContent = s.generated;

  const v = s.verification;
  const log = v.log;
  if (v.state === "verified") {
    setText("verification", "Verified", "big ok");
    setText("records", log.records);
    setText("chain", `whole, from record ${log.first_seq} to ${log.last_seq}, ${log.files} file(s)`);
    setText("checkpoints", log.checkpoints);
    const c = log.last_checkpoint;
    setText("last-checkpoint", c ? `no. ${c.number ?? "?"}, record ${c.seq}` : "none yet");
    setText("unsigned", `${log.unsigned_records} record(s)` +
      (log.partial_last_line ? " and a line being written" : ""),
      log.unsigned_records > 0 ? "warn" : "");
  } else {
    setText("verification", v.state === "tampered" ? "TAMPERED" : "Unreadable", "big bad");
    for (const id of ["records", "chain", "checkpoints", "last-checkpoint", "unsigned"]) {
      setText(id, "—");
    }
    const e = byTest("verification-error");
    e.textContent = v.error;
    e.hidden = false;
  }

  const r = s.renewal;
  if (r) {
    setText("renewal-due", r.due, r.days_left < 0 ? "big bad" : r.days_left < 90 ? "big warn" : "big ok");
    setText("renewal-days", r.days_left);
    setText("renewal-generation", r.generation);
    setText("renewal-last", r.last_renewal);
  } else {
    for (const id of ["renewal-due", "renewal-days", "renewal-generation", "renewal-last"]) {
      setText(id, "—");
    }
  }

  if (v.state !== "verified") {
    // Nothing of a log that does not verify is shown.
    for (const id of ["batches", "lines", "codes", "refusals", "guard", "unseals"]) setText(id, "—");
    $("#timeline-note").textContent = "(nothing shown: the log does not verify)";
    $("#loading").hidden = true;
    for (const id of ["#cards", "#timeline-section"]) $(id).hidden = false;
    document.body.dataset.ready = "true";
    return;
  }
  const k = s.key_events;
  const guardTotal = s.guard_events.reduce((n, [, c]) => n + c, 0);
  setText("batches", sum(s.usage, "batches"));
  setText("lines", sum(s.usage, "records"));
  setText("codes", sum(s.usage, "ok"));
  setText("refusals", sum(k, "requests_refused") + sum(k, "connections_refused"));
  setText("guard", guardTotal);
  setText("unseals", `${sum(k, "unseal")} / ${sum(k, "seal")}`);

  // Per day: the usage and the key events, merged.
  const days = new Map();
  const day = (p) => {
    if (!days.has(p)) {
      days.set(p, { batches: 0, records: 0, ok: 0, refusals: 0, guard: 0, unseal: 0, seal: 0, ops: 0, reads: 0 });
    }
    return days.get(p);
  };
  for (const u of s.usage) {
    const d = day(u.period);
    d.batches += u.batches; d.records += u.records; d.ok += u.ok;
  }
  for (const e of k) {
    const d = day(e.period);
    d.refusals += e.requests_refused + e.connections_refused;
    d.unseal += e.unseal; d.seal += e.seal;
    d.ops += e.operations_executed; d.reads += e.audit_reads;
  }
  for (const [p, n] of s.guard_events) day(p).guard += n;
  const perDay = byTest("per-day").tBodies[0];
  for (const p of [...days.keys()].sort().reverse()) {
    const d = days.get(p);
    const row = perDay.insertRow();
    cell(row, p);
    for (const n of [d.batches, d.records, d.ok, d.refusals, d.guard, d.unseal, d.seal, d.ops, d.reads]) {
      cell(row, n, "n");
    }
  }
  const usage = byTest("usage").tBodies[0];
  for (const u of [...s.usage].reverse()) {
    const row = usage.insertRow();
    cell(row, u.period); cell(row, u.client); cell(row, u.purpose);
    for (const n of [u.batches, u.records, u.ok, u.refused, u.aborted]) cell(row, n, "n");
  }

  $("#timeline-note").textContent = s.timeline.length < s.records
    ? `(the newest ${s.timeline.length} of ${s.records} records)` : `(${s.records} records)`;
  const render = () => {
    const f = $("#filter").value;
    const body = byTest("timeline").tBodies[0];
    body.replaceChildren();
    for (const e of s.timeline) {
      if (f !== "all" && !(CATEGORIES[f] || []).includes(e.event)) continue;
      const row = body.insertRow();
      row.dataset.event = e.event;
      cell(row, e.seq, "n"); cell(row, e.time); cell(row, e.event);
      cell(row, e.actor || "the service");
      cell(row, JSON.stringify(e.details), "details");
    }
  };
  $("#filter").addEventListener("change", render);
  render();

  $("#loading").hidden = true;
  for (const id of ["#cards", "#periods", "#timeline-section"]) $(id).hidden = false;
  document.body.dataset.ready = "true";
}

fetch("/audit/summary.json", { cache: "no-store" })
  .then((r) => r.ok ? r.json() : r.json().then((e) => Promise.reject(new Error(`${r.status} ${e.error}: ${e.message}`))))
  .then(show)
  .catch((e) => {
    $("#loading").hidden = true;
    const f = $("#failed");
    f.textContent = `The log could not be read: ${e.message}`;
    f.hidden = false;
    document.body.dataset.ready = "error";
  });
