// One open conversation: header (name, opt-out badge, assign, close/reopen), the thread
// as bubbles with day separators and live delivery states, and the compose box with the
// segment counter (Enter sends, Shift+Enter is a new line).

import {api} from "./api.js";
import {h, fill, newId, errorBox, announce, submitOnEnter} from "./dom.js";
import {dayKey, dayLabel, failureText, formatPhone, memberName, statusWord, timeOfDay} from "./format.js";
import {counterText, segmentInfo} from "./segments.js";
import {composeTools, previewLine, render, valuesFor} from "./merge.js";
import * as contact from "./contact.js";

const PAGE = 50;

/**
 * @param {HTMLElement} pane
 * @param {object} ctx  app context (me, users map, …)
 * @param {string} id   conversation id
 * @param {{onChange: (conversation) => void, onRead: (id) => void, isOptedOut: (memberId) => boolean|undefined}} hooks
 */
export function open(pane, ctx, id, hooks) {
  const view = {
    id, conversation: null, messages: new Map(), metaEls: new Map(), cursor: null,
    optedOut: false, lastDay: null, closed: false,
  };
  const headEl = h("header.conv-head");
  const earlier = h("button.link", {type: "button", hidden: true, onclick: () => loadEarlier()}, "Load earlier messages");
  const threadId = newId("thread");
  const thread = h("div.thread", {id: threadId, role: "log", "aria-live": "polite", "aria-relevant": "additions", tabindex: "0"});
  const error = errorBox();
  const composeEl = h("div.compose");
  // The contact panel sits beside the thread (a view of its own on a phone).
  const asideId = newId("contact");
  const aside = h("aside.contact-panel", {id: asideId, "aria-label": "Contact"});
  const wide = window.matchMedia("(min-width: 1100px)");
  let showContact = wide.matches;
  const body = h("div.conv-body", {}, h("div.conv-main", {}, earlier, thread, composeEl), aside);
  fill(pane, headEl, error.el, body);
  // The panel knows every assignee by name: the header's select can list them too.
  const panel = contact.open(aside, ctx, id, () => { if (view.conversation) renderHead(); });
  function setContactShown(value) {
    showContact = value;
    body.classList.toggle("contact-open", showContact);
    aside.hidden = !showContact;
    if (view.conversation) renderHead();
  }
  setContactShown(showContact);
  const onWidth = (event) => setContactShown(event.matches);  // beside on wide screens only
  wide.addEventListener("change", onWidth);
  // Stay pinned to the newest message when the pane changes size (phone rotation, the
  // compose box growing or being replaced), unless the reader scrolled up.
  let pinned = true;
  thread.addEventListener("scroll", () => {
    pinned = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 40;
  });
  const resize = new ResizeObserver(() => { if (pinned) thread.scrollTop = thread.scrollHeight; });
  resize.observe(thread);

  /* ---------- header ---------- */

  function renderHead() {
    const conv = view.conversation;
    const name = memberName(conv.member);
    const assign = h("select", {id: newId("assign"), onchange: (e) => patch({assigned_to: e.target.value || null})});
    const options = [["", "Unassigned"], [ctx.me.user.id, `Me (${ctx.me.user.name})`]];
    for (const [userId, user] of ctx.users) if (userId !== ctx.me.user.id) options.push([userId, user.name]);
    if (conv.assigned_to && !options.some(([v]) => v === conv.assigned_to)) options.push([conv.assigned_to, "Someone else"]);
    for (const [value, text] of options) assign.append(h("option", {value, selected: (conv.assigned_to || "") === value}, text));
    const isClosed = conv.status === "closed";
    fill(headEl,
      h("a.back.btn", {href: "#/inbox", "aria-label": "Back to conversations"}, "← Back"),
      h("div.grow",
        h("h2", {}, name),
        name !== formatPhone(conv.member.phone) ? h("span.muted.small", {}, formatPhone(conv.member.phone), " ") : null,
        view.optedOut ? h("span.badge.optout", {}, "Opted out") : null, " ",
        isClosed ? h("span.badge.closed", {}, "Closed") : null),
      h("div.actions",
        h("button.contact-toggle", {type: "button", "aria-expanded": String(showContact), "aria-controls": asideId,
          onclick: () => setContactShown(!showContact)}, "Contact"),
        h("label.visually-hidden", {for: assign.id}, "Assigned to"), assign,
        h("button", {type: "button", onclick: () => patch({status: isClosed ? "open" : "closed"})},
          isClosed ? "Reopen" : "Close")));
  }

  async function patch(change) {
    error.clear();
    try {
      const {data} = await api.patch(`/conversations/${id}`, change);
      setConversation(data);
      announce(change.status ? `Conversation ${data.status === "closed" ? "closed" : "reopened"}.` : "Assignment saved.");
    } catch (err) {
      error.show(err.message);
      renderHead();
    }
  }

  function setConversation(conv) {
    view.conversation = conv;
    const known = hooks.isOptedOut(conv.member.id);
    if (known !== undefined) view.optedOut = known;
    else if (conv.member.opt_in_sms === false || conv.member.opted_out_at) view.optedOut = true;
    renderHead();
    renderCompose();
    hooks.onChange(conv);
  }

  /* ---------- thread ---------- */

  function bubble(msg) {
    const els = [];
    const day = dayKey(msg.created_at);
    if (day !== view.lastDay) {
      els.push(h("div.day", {role: "separator"}, dayLabel(msg.created_at)));
      view.lastDay = day;
    }
    const group = msg.kind === "broadcast";
    const who = msg.direction === "inbound" ? memberName(view.conversation.member) : "You";
    els.push(h(`div.bubble.${msg.direction}${group ? ".group-send" : ""}`, {dataset: {id: msg.id, kind: msg.kind || "text"}},
      group ? groupLabel(msg) : h("span.visually-hidden", {}, `${who}: `),
      group ? h("span.visually-hidden", {}, " to everyone in the send: ") : null, msg.body));
    const meta = h(`div.meta.${msg.direction}`, {dataset: {for: msg.id}});
    view.metaEls.set(msg.id, meta);
    renderMeta(msg);
    els.push(meta);
    return els;
  }

  function groupLabel(msg) {
    // Admins can open the send itself (its counts and failed list).
    return ctx.hasRole && ctx.hasRole("admin")
      ? h("a.group-label", {href: `#/send/${msg.broadcast_id}`}, "Group send")
      : h("span.group-label", {}, "Group send");
  }

  function renderMeta(msg) {
    const meta = view.metaEls.get(msg.id);
    if (!meta) return;
    const time = timeOfDay(msg.created_at);
    if (msg.direction === "inbound") {
      fill(meta, time);
      return;
    }
    const failed = msg.status === "failed";
    const status = h(`span.status-${msg.status}`, {dataset: {status: msg.status}, title: failed && msg.error ? msg.error : ""},
      statusWord(msg.status), failed ? `: ${failureText(msg.error_reason, msg.error)}` : "");
    fill(meta, time, " · ", status);
  }

  function renderThread() {
    const atBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 40;
    const fromBottom = thread.scrollHeight - thread.scrollTop;
    view.lastDay = null;
    view.metaEls.clear();
    const sorted = [...view.messages.values()].sort((a, b) => a.created_at.localeCompare(b.created_at));
    fill(thread, sorted.length ? sorted.map(bubble) : h("p.muted", {}, "No messages yet."));
    earlier.hidden = !view.cursor;
    thread.scrollTop = atBottom ? thread.scrollHeight : thread.scrollHeight - fromBottom;
  }

  function addMessage(msg, {live = false} = {}) {
    if (view.messages.has(msg.id)) {
      Object.assign(view.messages.get(msg.id), msg);
      renderMeta(view.messages.get(msg.id));
      return;
    }
    view.messages.set(msg.id, msg);
    const last = [...view.messages.values()].reduce((a, b) => (a && a.created_at > b.created_at ? a : b), null);
    if (last !== msg || !thread.querySelector(".bubble")) {
      renderThread();
    } else {
      const stick = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80;
      thread.append(...bubble(msg));
      if (stick || !live) thread.scrollTop = thread.scrollHeight;
    }
  }

  function newestAt() {
    let newest = "";
    for (const msg of view.messages.values()) if (msg.created_at > newest) newest = msg.created_at;
    return newest;
  }

  async function fetchLatest() {
    // A text we had no message event for (another staff member's reply, a STOP
    // confirmation): merge the newest page.
    try {
      const page = await api.get(`/conversations/${id}/messages`, {limit: PAGE});
      if (view.closed) return;
      for (const msg of page.data) addMessage(msg, {live: true});
    } catch (_err) { /* the next event or a reload catches up */ }
  }

  async function loadEarlier() {
    try {
      const page = await api.get(`/conversations/${id}/messages`, {limit: PAGE, cursor: view.cursor});
      view.cursor = page.meta.next_cursor || null;
      for (const msg of page.data) view.messages.set(msg.id, msg);
      renderThread();
    } catch (err) {
      error.show(err.message);
    }
  }

  /* ---------- compose ---------- */

  const text = h("textarea", {id: newId("reply"), rows: 2, placeholder: "Write a reply…"});
  const counter = h("div.counter", {id: `${text.id}-count`});
  const sendButton = h("button.primary", {type: "submit"}, "Send");
  const composeError = errorBox();
  // With merge fields: what this member will get (the server merges it when sending).
  const mergePreview = h("p.merge-preview", {id: `${text.id}-merged`, hidden: true});
  text.setAttribute("aria-describedby", `${counter.id} ${mergePreview.id}`);
  const form = h("form", {},
    h("label.visually-hidden", {for: text.id}, "Reply"), composeTools(text),
    h("div.row", {}, h("div.grow", {}, text), sendButton), counter, mergePreview, composeError.el,
    h("p.field-hint", {}, "Enter sends · Shift+Enter adds a line"));
  let idempotencyKey = null;  // one per text, so a retried send never texts twice

  function updateCounter() {
    const values = valuesFor(view.conversation && view.conversation.member, ctx.me.church.name);
    const merged = render(text.value, values);  // the counter counts what is sent
    counter.textContent = counterText(merged);
    counter.classList.toggle("over", segmentInfo(merged).segments > 1);
    const preview = previewLine(text.value, values, null);
    mergePreview.textContent = preview.text;
    mergePreview.hidden = !preview.text;
    mergePreview.classList.toggle("bad", preview.bad);
  }

  text.addEventListener("input", () => { idempotencyKey = null; updateCounter(); });
  submitOnEnter(text, form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = text.value.trim();
    if (!body || view.optedOut) return;
    composeError.clear();
    sendButton.disabled = true;
    idempotencyKey = idempotencyKey || (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`);
    try {
      const {data} = await api.post(`/conversations/${id}/messages`, {body},
        {headers: {"Idempotency-Key": idempotencyKey}});
      text.value = "";
      idempotencyKey = null;
      updateCounter();
      addMessage(data);
      thread.scrollTop = thread.scrollHeight;
      announce("Reply queued.");
    } catch (err) {
      if (err.code === "recipient_opted_out") setOptedOut(true);
      composeError.show(err.message);
    } finally {
      sendButton.disabled = view.optedOut;
      text.focus();
    }
  });

  function renderCompose() {
    if (view.optedOut) {
      fill(composeEl, h("p.compose-blocked", {role: "status"},
        `${memberName(view.conversation.member)} has opted out of texts (replied STOP). ` +
        "You can't reply until they text START."));
      return;
    }
    if (!form.isConnected) fill(composeEl, form);
    sendButton.disabled = false;
    updateCounter();
  }

  function setOptedOut(value) {
    if (view.optedOut === value) return;
    view.optedOut = value;
    if (view.conversation) { renderHead(); renderCompose(); }
  }

  /* ---------- load and live ---------- */

  async function markRead() {
    if (document.visibilityState !== "visible") return;
    if (!view.conversation || view.conversation.unread_count === 0) return;
    try {
      await api.post(`/conversations/${id}/read`, {});
      view.conversation = {...view.conversation, unread_count: 0};
      hooks.onRead(id);
    } catch (_err) { /* unread stays; not worth an error box */ }
  }

  async function load() {
    error.clear();
    try {
      const [conv, page] = await Promise.all([
        api.get(`/conversations/${id}`),
        api.get(`/conversations/${id}/messages`, {limit: PAGE}),
      ]);
      if (view.closed) return;
      view.messages.clear();
      for (const msg of page.data) view.messages.set(msg.id, msg);
      view.cursor = page.meta.next_cursor || null;
      setConversation(conv.data);
      renderThread();
      thread.scrollTop = thread.scrollHeight;
      markRead();
      checkMember(conv.data.member.id);
    } catch (err) {
      if (!view.closed) fill(pane, h("p.error-text", {role: "alert"}, err.message));
    }
  }

  async function checkMember(memberId) {
    // The conversation summary has no opt-out field; the member record does.
    try {
      const {data} = await api.get(`/members/${memberId}`);
      if (hooks.isOptedOut(memberId) === undefined) setOptedOut(data.opt_in_sms === false || Boolean(data.opted_out_at));
    } catch (_err) { /* a 409 on send still explains it */ }
  }

  // A group send's per-recipient status moves with its broadcast's progress events: read
  // the newest page again when a send shown here is not final yet, or once for a send not
  // seen before (it may just have reached this member). At most one read a second.
  const seenSends = new Set();
  let progressTimer = null;
  function groupSendProgress(data) {
    const shown = view.messages.get(data.id);
    const pending = shown && shown.kind === "broadcast" && !["delivered", "failed"].includes(shown.status);
    if (!pending && (shown || seenSends.has(data.id))) return;
    seenSends.add(data.id);
    if (progressTimer) return;
    progressTimer = setTimeout(() => { progressTimer = null; fetchLatest(); }, 1000);
  }

  function onEvent(event) {
    panel.onEvent(event);
    const data = event.data || {};
    if (event.type === "message.received") {
      const msg = data.message || data;
      if (msg.conversation_id !== id) return;
      addMessage(msg, {live: true});
      if (data.conversation) setConversation(data.conversation);
      if (msg.direction === "inbound") markRead();
    } else if (event.type === "message.status" && data.message_id && view.messages.has(data.message_id)) {
      const msg = view.messages.get(data.message_id);
      msg.status = data.status;
      msg.error = data.error || null;
      msg.error_reason = data.error_reason || null;
      renderMeta(msg);
      if (data.status === "failed") announce(`Reply failed: ${failureText(msg.error_reason, msg.error)}`);
    } else if (event.type === "broadcast.progress" && data.id) {
      groupSendProgress(data);
    } else if (event.type === "conversation.updated" && data.id === id) {
      setConversation({...view.conversation, ...data});
      // Same-transaction texts share a timestamp (a STOP and its confirmation): >=.
      const outbound = data.last_message && data.last_message.direction === "outbound";
      if (data.last_message_at && (data.last_message_at > newestAt() ||
          (outbound && data.last_message_at === newestAt()))) fetchLatest();
    } else if ((event.type === "member.opted_out" || event.type === "member.opted_in") && view.conversation) {
      const memberId = data.member_id || data.id || (data.member && data.member.id);
      if (memberId === view.conversation.member.id) setOptedOut(event.type === "member.opted_out");
    }
  }

  load();
  return {
    id,
    onEvent,
    refresh() { panel.refresh(); return load(); },
    focusCompose() { if (form.isConnected) text.focus(); },
    close() { view.closed = true; resize.disconnect(); panel.close(); clearTimeout(progressTimer);
      wide.removeEventListener("change", onWidth); },
  };
}
