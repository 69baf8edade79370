// Send to a group: pick groups, compose with the segment counter, preview recipients,
// segments and cost, send now or later after a confirm dialog that repeats the numbers;
// then a live progress view (broadcast.progress events), cancel, and the failed list.

import {api} from "./api.js";
import {h, fill, newId, errorBox, busy, confirmDialog, announce} from "./dom.js";
import {broadcastWord, dateTime, failureText, formatPhone, memberName, money, plural, statusWord} from "./format.js";
import {counterText, segmentInfo} from "./segments.js";
import {composeTools, fieldsUsed} from "./merge.js";

// Quote price per segment in cents (the carrier's bill is the truth; this is an estimate).
const CENTS_PER_SEGMENT = 0.79;
const COUNT_KEYS = ["queued", "sending", "sent", "delivered", "failed", "undeliverable", "canceled"];
const FINISHED = ["sent", "delivered", "failed", "undeliverable", "canceled"];
const SETTLE_MS = 1500;
const POLL_MS = 4000;
const POLL_FOR_MS = 10 * 60 * 1000;

export function mount(main, ctx) {
  let current = null;
  const render = (params) => {
    if (current) current.close();
    current = params[0] ? progressView(main, ctx, params[0]) : composeView(main, ctx);
  };
  render(ctx.params);
  return {
    update: render,
    onEvent: (event) => current && current.onEvent && current.onEvent(event),
    refresh: () => current && current.refresh && current.refresh(),
    unmount: () => current && current.close(),
  };
}

/* ---------- compose ---------- */

function composeView(main, ctx) {
  const state = {groups: [], selected: new Set(), optedOut: new Map()};
  const error = errorBox();
  const pick = h("ul.group-pick", {"aria-label": "Groups"});
  const text = h("textarea", {id: newId("body"), rows: 5});
  const counter = h("div.counter", {id: `${text.id}-count`});
  text.setAttribute("aria-describedby", counter.id);
  const preview = h("p.preview-line", {role: "status", "aria-live": "polite"});
  // Merge fields: each recipient's own text, previewed by the server (POST /messages/preview).
  const merged = h("div.merge-samples", {hidden: true, "aria-live": "polite"});
  const whenNow = h("input", {type: "radio", name: "when", value: "now", checked: true});
  const whenLater = h("input", {type: "radio", name: "when", value: "later"});
  const at = h("input", {id: newId("at"), type: "datetime-local", disabled: true});
  const sendButton = h("button.primary", {type: "submit"}, "Review and send");
  const recent = h("div");
  const form = h("form.card", {},
    h("h2", {}, "1. Choose groups"), pick,
    h("h2", {}, "2. Write the text"),
    h("label", {for: text.id}, "Message"), composeTools(text), text, counter, merged,
    h("h2", {}, "3. When"),
    h("div", {role: "radiogroup", "aria-label": "When to send"},
      h("label.inline", {}, whenNow, "Send now"), h("label.inline", {}, whenLater, "Schedule for later")),
    h("div", {hidden: true, dataset: {role: "when-later"}}, h("label", {for: at.id}, "Date and time (your time zone)"), at),
    h("div.notice", {}, preview), error.el, sendButton);
  fill(main, h("h1", {}, "Send to a group"), h("div.grid2", {}, form, h("section.card", {}, h("h2", {}, "Recent sends"), recent,
    h("p", {}, h("a", {href: "#/scheduled"}, "All scheduled and recurring sends")))));

  for (const radio of [whenNow, whenLater]) {
    radio.addEventListener("change", () => {
      at.disabled = whenNow.checked;
      at.parentElement.hidden = whenNow.checked;
      if (whenLater.checked) at.focus();
    });
  }
  text.addEventListener("input", () => { updatePreview(); mergeSoon(); });

  let mergeTimer = null;
  let mergeSeq = 0;
  function mergeSoon() {
    clearTimeout(mergeTimer);
    mergeTimer = setTimeout(loadMerge, 350);
  }
  async function loadMerge() {
    const seq = ++mergeSeq;
    const {used, unknown} = fieldsUsed(text.value);
    state.merge = null;
    if (unknown !== null) {
      fill(merged, h("p.merge-preview.bad", {}, `Unknown field {${unknown}}: use {first_name}, {last_name} or {church_name}.`));
      merged.hidden = false;
      return updatePreview();
    }
    if (!used.length || !state.selected.size) {
      merged.hidden = true;
      return updatePreview();
    }
    try {
      const {data} = await api.post("/messages/preview", {body: text.value, group_ids: [...state.selected]});
      if (seq !== mergeSeq) return undefined;
      state.merge = data;
      fill(merged, h("p.small.muted", {}, "Each person gets their own text, for example:"),
        h("ul.samples", {}, data.samples.map((s) => h("li", {}, h("strong", {}, `${memberName(s)}: `), s.body))),
        h("p.small.muted", {}, `Longest text: “${data.longest.body}” (${plural(data.longest.segments, "segment")}). The estimate counts it for everyone.`));
      merged.hidden = false;
    } catch (err) {
      if (seq !== mergeSeq) return undefined;
      fill(merged, h("p.merge-preview.bad", {}, err.message));
      merged.hidden = false;
    }
    return updatePreview();
  }

  function numbers() {
    let members = 0;
    let optedOut = 0;
    let unknown = false;
    for (const id of state.selected) {
      const group = state.groups.find((g) => g.id === id);
      members += group ? group.member_count : 0;
      const out = state.optedOut.get(id);
      if (out === undefined) unknown = true; else optedOut += out;
    }
    const recipients = Math.max(members - optedOut, 0);
    const info = segmentInfo(state.merge ? state.merge.longest.body : text.value);
    const segments = Math.max(info.segments, 1);
    return {members, optedOut, unknown, recipients, segments, cost: recipients * segments * CENTS_PER_SEGMENT};
  }

  function previewText(n) {
    const skipped = n.unknown ? "opted-out members are skipped" : `${n.optedOut.toLocaleString()} opted out are skipped`;
    return `${plural(n.recipients, "recipient")} (${skipped}) · ${plural(n.segments, "segment")} each · ≈ ${money(n.cost)}`;
  }

  function updatePreview() {
    counter.textContent = counterText(state.merge ? state.merge.longest.body : text.value) +
      (state.merge ? " (longest merged text)" : "");
    preview.textContent = state.selected.size ? previewText(numbers()) : "Choose at least one group.";
  }

  async function countOptedOut(groupId) {
    // Members of the group who opted out: they are skipped when the send is resolved.
    try {
      const page = await api.get("/members", {group_id: groupId, opted_in: "false", limit: 200});
      state.optedOut.set(groupId, page.data.length);
    } catch (_err) { /* preview says "opted-out members are skipped" */ }
    updatePreview();
  }

  async function loadGroups() {
    try {
      state.groups = await api.all("/groups");
      fill(pick, state.groups.length ? state.groups.map((g) => {
        const box = h("input", {type: "checkbox", value: g.id, onchange: (e) => {
          if (e.target.checked) { state.selected.add(g.id); countOptedOut(g.id); } else state.selected.delete(g.id);
          updatePreview();
          mergeSoon();
        }});
        return h("li", {}, h("label", {}, box, `${g.name} `, h("span.muted", {}, `(${plural(g.member_count, "member")})`)));
      }) : h("li.muted", {}, "No groups yet: create one under Members & groups."));
    } catch (err) {
      error.show(err.message);
    }
  }

  async function loadRecent() {
    try {
      const {data} = await api.get("/messages", {limit: 10});
      fill(recent, data.length ? h("ul", {}, data.map((m) => h("li", {},
        h("a", {href: `#/send/${m.id}`}, m.body.length > 60 ? `${m.body.slice(0, 60)}…` : m.body),
        h("span.muted.small", {}, ` · ${broadcastWord(m)} · ${plural(m.recipient_count, "recipient")} · ${dateTime(m.scheduled_at || m.created_at)}`))))
        : h("p.muted", {}, "Nothing sent yet."));
    } catch (err) {
      fill(recent, h("p.muted", {}, err.message));
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.clear();
    const body = text.value.trim();
    if (!state.selected.size) return error.show("Choose at least one group.");
    if (!body) return error.show("Write the text to send.");
    let scheduledAt = null;
    if (whenLater.checked) {
      const when = at.value ? new Date(at.value) : null;
      if (!when || Number.isNaN(when.getTime()) || when.getTime() < Date.now()) return error.show("Pick a date and time in the future.");
      scheduledAt = when.toISOString();
    }
    const n = numbers();
    const names = state.groups.filter((g) => state.selected.has(g.id)).map((g) => g.name).join(", ");
    const ok = await confirmDialog({
      title: scheduledAt ? "Schedule this text?" : "Send this text now?",
      lines: [`To: ${names}`, previewText(n), scheduledAt ? `Sends ${dateTime(scheduledAt)}.` : "Sends right away.", `“${body}”`,
        state.merge && state.merge.samples.length ? `For example, ${memberName(state.merge.samples[0])} gets: “${state.merge.samples[0].body}”` : null].filter(Boolean),
      confirmLabel: scheduledAt ? "Schedule" : `Send to ${plural(n.recipients, "recipient")}`,
    });
    if (!ok) return undefined;
    const payload = {body, group_ids: [...state.selected], ...(scheduledAt ? {scheduled_at: scheduledAt} : {})};
    // The same key for a retry of the same send: a lost response never texts everyone twice.
    const fingerprint = JSON.stringify(payload);
    if (state.fingerprint !== fingerprint) {
      state.fingerprint = fingerprint;
      state.key = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
    }
    const created = await busy(sendButton, error, async () => (await api.post("/messages", payload,
      {headers: {"Idempotency-Key": state.key}})).data);
    if (created) {
      announce(`${created.status === "scheduled" ? "Scheduled" : "Sending"} to ${plural(created.recipient_count, "recipient")}.`);
      ctx.navigate(`send/${created.id}`);
    }
    return undefined;
  });

  loadGroups();
  loadRecent();
  updatePreview();
  return {close() { clearTimeout(mergeTimer); }, refresh: loadRecent};
}

/* ---------- progress ---------- */

function progressView(main, ctx, id) {
  let message = null;
  let closed = false;
  let failedTimer = null;
  const error = errorBox();
  const bar = h("progress", {max: 1, value: 0, id: newId("progress")});
  const counts = h("div.counts", {role: "status", "aria-live": "polite"});
  const head = h("div");
  const cancel = h("button.danger", {type: "button", hidden: true}, "Cancel the rest");
  const failed = h("div");
  fill(main, h("p", {}, h("a", {href: "#/send"}, "← New send")),
    h("section.card", {}, head, h("label", {for: bar.id}, "Progress"), bar, counts, error.el, cancel),
    h("section.card", {}, h("h2", {}, "Failed recipients"), failed));

  function done(m) {
    const c = m.counts || {};
    return FINISHED.reduce((sum, k) => sum + (c[k] || 0), 0);
  }

  function render() {
    const c = message.counts || {};
    const total = message.recipient_count || COUNT_KEYS.reduce((s, k) => s + (c[k] || 0), 0);
    const heading = message.status === "scheduled" ? "Scheduled send"
      : message.outcome === "failed" ? "Could not send to a group"
        : message.completed_at || message.status === "canceled" ? "Sent to a group" : "Sending to a group";
    fill(head, h("h1", {}, heading),
      h("p", {}, `“${message.body}”`),
      h("p.muted", {}, h("span.broadcast-state", {dataset: {outcome: message.outcome || "", status: message.status}},
        broadcastWord(message)), ` · ${plural(total, "recipient")} · ${plural(message.segments || 1, "segment")} each`,
        message.scheduled_at ? ` · scheduled ${dateTime(message.scheduled_at)}` : "",
        message.completed_at ? ` · finished ${dateTime(message.completed_at)}` : ""),
      message.status === "scheduled" ? h("p", {}, h("a", {href: "#/scheduled"}, "Edit or cancel it on the Scheduled screen")) : null);
    bar.max = Math.max(total, 1);
    bar.value = done(message);
    bar.textContent = `${done(message)} of ${total}`;
    fill(counts, ["queued", "sent", "delivered", "failed"].map((k) => h("div", {dataset: {count: k}},
      h("strong", {}, (k === "queued" ? (c.queued || 0) + (c.sending || 0) : k === "failed" ? (c.failed || 0) + (c.undeliverable || 0) : c[k] || 0).toLocaleString()),
      statusWord(k))), c.canceled ? h("div", {}, h("strong", {}, c.canceled.toLocaleString()), "Canceled") : null);
    const open = ["queued", "scheduled", "sending"].includes(message.status) && !message.completed_at;
    cancel.hidden = !open || !ctx.hasRole("admin");
  }

  const names = new Map();  // member_id → name; recipients carry ids, people want names
  async function nameMembers(rows) {
    const missing = [...new Set(rows.map((r) => r.member_id))].filter((m) => m && !names.has(m)).slice(0, 50);
    await Promise.all(missing.map(async (memberId) => {
      try { names.set(memberId, memberName((await api.get(`/members/${memberId}`)).data)); } catch (_err) { names.set(memberId, ""); }
    }));
  }

  async function loadFailed() {
    try {
      const rows = [];
      for (const status of ["failed", "undeliverable"]) {
        rows.push(...(await api.get(`/messages/${id}/recipients`, {status, limit: 200})).data);
      }
      await nameMembers(rows);
      fill(failed, rows.length ? h("div.table-wrap", {}, h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Recipient"), h("th", {}, "Phone"), h("th", {}, "Attempts"), h("th", {}, "Reason"))),
        h("tbody", {}, rows.map((r) => h("tr", {},
          h("td", {}, names.get(r.member_id) || "Unknown member"), h("td", {}, formatPhone(r.phone)),
          h("td", {}, String(r.attempts ?? "")),
          h("td.reason", {title: r.last_error || ""}, r.last_error || r.error_reason ? failureText(r.error_reason, r.last_error) : statusWord(r.status)))))))
        : h("p.muted", {}, "None so far."));
    } catch (err) {
      fill(failed, h("p.muted", {}, err.message));
    }
  }

  async function load() {
    try {
      const before = message && JSON.stringify(message.counts);
      message = (await api.get(`/messages/${id}`)).data;
      if (before !== JSON.stringify(message.counts)) lastChange = Date.now();
      if (!closed) { render(); loadFailed(); }
    } catch (err) {
      error.show(err.message);
    }
  }

  cancel.addEventListener("click", async () => {
    const ok = await confirmDialog({title: "Cancel the rest of this send?",
      lines: ["Texts not yet sent will not go out. Texts already sent stay sent."], confirmLabel: "Cancel the rest", danger: true});
    if (!ok) return;
    await busy(cancel, error, async () => { await api.post(`/messages/${id}/cancel`, {}); await load(); });
  });

  // Progress events are throttled (2/s) and may skip the last change, so a short quiet
  // after an event, and a slow poll while texts still await their receipts, re-read the
  // counts by REST.
  let settleTimer = null;
  let pollTimer = null;
  let lastChange = Date.now();
  function settleSoon() {
    clearTimeout(settleTimer);
    settleTimer = setTimeout(load, SETTLE_MS);
  }
  function pending(m) {
    const c = m.counts || {};
    return (c.queued || 0) + (c.sending || 0) + (c.sent || 0) > 0 && m.status !== "scheduled";
  }
  function poll() {
    clearTimeout(pollTimer);
    if (closed || !message || !pending(message) || Date.now() - lastChange > POLL_FOR_MS) return;
    pollTimer = setTimeout(() => load().then(poll), POLL_MS);
  }

  function onEvent(event) {
    if (!message) return;
    const data = event.data || {};
    if (event.type === "broadcast.progress" && data.id === id) {
      lastChange = Date.now();
      settleSoon();
      const before = message.counts || {};
      message.counts = data.counts;
      if (message.status === "queued" || message.status === "scheduled") message.status = "sending";
      if (data.status) message.status = data.status;
      if (data.completed_at) message.completed_at = data.completed_at;
      if ("outcome" in data) message.outcome = data.outcome;
      render();
      const newlyFailed = (data.counts.failed || 0) + (data.counts.undeliverable || 0) - (before.failed || 0) - (before.undeliverable || 0);
      if (newlyFailed > 0 && !failedTimer) failedTimer = setTimeout(() => { failedTimer = null; loadFailed(); }, 2000);
    }
  }

  load().then(poll);
  return {
    onEvent,
    refresh: load,
    close() { closed = true; clearTimeout(failedTimer); clearTimeout(settleTimer); clearTimeout(pollTimer); },
  };
}
