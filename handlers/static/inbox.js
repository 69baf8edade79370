// The inbox: the conversation list (filters, search, live reordering, unread and
// opted-out badges, assignee initials) beside the open conversation. On a phone the two
// are separate views: the list, or the conversation with a Back link.

import {api} from "./api.js";
import {h, fill, newId, errorBox, announce} from "./dom.js";
import {initials, memberName, relativeTime} from "./format.js";
import * as conversation from "./conversation.js";
import {startConversation} from "./newconversation.js";

const FILTERS = [
  {key: "all", label: "All", query: () => ({status: "open"})},
  {key: "unread", label: "Unread", query: () => ({unread: "true"})},
  {key: "mine", label: "Mine", query: (me) => ({assigned_to: me.user.id, status: "open"})},
  {key: "closed", label: "Closed", query: () => ({status: "closed"})},
];
const FLASH_MS = 2500;

export function mount(main, ctx) {
  const state = {
    filter: "all", search: "", rows: new Map(), order: [], cursor: null, openId: null,
    open: null, optedOut: new Map(), users: new Map(), tick: null,
  };
  const error = errorBox();
  const searchInput = h("input", {id: newId("search"), type: "search", placeholder: "Search name or phone", autocomplete: "off"});
  const filterButtons = FILTERS.map((f) => h("button", {
    type: "button", "aria-pressed": String(f.key === state.filter), onclick: () => setFilter(f.key),
  }, f.label));
  const list = h("ul.conv-list", {"aria-label": "Conversations"});
  const more = h("button.link", {type: "button", hidden: true, onclick: () => load({append: true})}, "Load more");
  const empty = h("p.list-empty", {hidden: true});
  const listPane = h("section.list-pane", {"aria-label": "Conversation list"},
    h("div.list-tools",
      h("button.primary.new-conv", {type: "button", onclick: () => startConversation(ctx)}, "New conversation"),
      h("label.visually-hidden", {for: searchInput.id}, "Search conversations"), searchInput,
      h("div.filters", {role: "group", "aria-label": "Filter conversations"}, filterButtons)),
    error.el, list, empty, h("div.row", {}, more));
  const convPane = h("section.conv-pane", {"aria-label": "Conversation"});
  const layout = h("div.inbox", {}, listPane, convPane);
  main.append(h("h1.visually-hidden", {}, "Inbox"), layout);

  searchInput.addEventListener("input", () => { state.search = searchInput.value.trim().toLowerCase(); renderList(); });

  /* ---------- data ---------- */

  function matchesFilter(conv) {
    if (state.filter === "unread") return conv.unread_count > 0;
    if (state.filter === "closed") return conv.status === "closed";
    if (state.filter === "mine") return conv.status !== "closed" && conv.assigned_to === ctx.me.user.id;
    return conv.status !== "closed";
  }

  function matchesSearch(conv) {
    if (!state.search) return true;
    const digits = state.search.replace(/\D/g, "");
    const name = memberName(conv.member).toLowerCase();
    const phone = (conv.member.phone || "").replace(/\D/g, "");
    return name.includes(state.search) || (digits.length >= 3 && phone.includes(digits));
  }

  function sortOrder() {
    state.order = [...state.rows.values()]
      .sort((a, b) => (b.last_message_at || "").localeCompare(a.last_message_at || ""))
      .map((c) => c.id);
  }

  let loadSeq = 0;
  async function load({append = false} = {}) {
    error.clear();
    const filter = FILTERS.find((f) => f.key === state.filter);
    const seq = ++loadSeq;  // a slower answer for an older filter must not win
    try {
      const page = await api.get("/conversations", {...filter.query(ctx.me), limit: 50, cursor: append ? state.cursor : null});
      if (seq !== loadSeq) return;
      if (!append) state.rows.clear();
      for (const conv of page.data) state.rows.set(conv.id, conv);
      state.cursor = page.meta.next_cursor || null;
      sortOrder();
      renderList();
    } catch (err) {
      error.show(err.message);
    }
  }

  async function loadUsers() {
    // Only owners may list users; others see initials for themselves and "Assigned".
    state.users.set(ctx.me.user.id, ctx.me.user);
    if (!ctx.hasRole("owner")) return;
    try {
      for (const user of await api.all("/users")) state.users.set(user.id, user);
      renderList();
    } catch (_err) { /* initials are a nicety */ }
  }

  function setFilter(key) {
    state.filter = key;
    filterButtons.forEach((b, i) => b.setAttribute("aria-pressed", String(FILTERS[i].key === key)));
    load();
  }

  /* ---------- rendering ---------- */

  function isOptedOut(conv) {
    const known = state.optedOut.get(conv.member.id);
    if (known !== undefined) return known;
    return conv.member.opt_in_sms === false || Boolean(conv.member.opted_out_at);
  }

  function row(conv) {
    const name = memberName(conv.member);
    const last = conv.last_message || {};
    const preview = last.body ? `${last.direction === "outbound" ? "You: " : ""}${last.body}` : "No messages yet";
    const assignee = conv.assigned_to ? state.users.get(conv.assigned_to) : null;
    const button = h(`button.conv-row${conv.unread_count > 0 ? ".unread" : ""}`, {
      type: "button", dataset: {id: conv.id},
      "aria-current": conv.id === state.openId ? "true" : null,
      onclick: () => ctx.navigate(`inbox/${conv.id}`),
    },
    h("span.name", {}, name),
    h("span.when", {}, h("time", {datetime: conv.last_message_at || ""}, relativeTime(conv.last_message_at))),
    h("span.preview", {}, preview),
    h("span.marks", {},
      isOptedOut(conv) ? h("span.badge.optout", {}, "Opted out") : null,
      conv.assigned_to ? h("span.badge.assignee", {title: assignee ? `Assigned to ${assignee.name}` : "Assigned"},
        h("span.visually-hidden", {}, "Assigned to "), assignee ? initials(assignee.name) : "✓") : null,
      conv.unread_count > 0 ? h("span.badge.unread", {}, String(conv.unread_count),
        h("span.visually-hidden", {}, " unread")) : null));
    return h("li", {}, button);
  }

  function renderList() {
    const visible = state.order.map((id) => state.rows.get(id)).filter((c) => c && matchesFilter(c) && matchesSearch(c));
    const focused = list.contains(document.activeElement) ? document.activeElement.dataset.id : null;
    fill(list, visible.map(row));
    if (focused) {  // a re-render must not steal keyboard focus
      const again = list.querySelector(`[data-id="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
    more.hidden = !state.cursor;
    empty.hidden = visible.length > 0;
    empty.textContent = state.search ? "No conversations match your search." : "No conversations here yet.";
    layout.classList.toggle("show-conversation", Boolean(state.openId));
  }

  function flash(id) {
    const button = list.querySelector(`[data-id="${CSS.escape(id)}"]`);
    if (!button) return;
    button.classList.remove("flash");
    void button.offsetWidth;  // restart the animation
    button.classList.add("flash");
    setTimeout(() => button.classList.remove("flash"), FLASH_MS);
  }

  /* ---------- the open conversation ---------- */

  function openConversation(id) {
    if (state.open && state.open.id === id) return;
    if (state.open) state.open.close();
    state.openId = id || null;
    state.open = null;
    if (!id) {
      fill(convPane, h("p.conv-empty", {}, "Choose a conversation to read and reply."));
    } else {
      state.open = conversation.open(convPane, {...ctx, users: state.users}, id, {
        onChange: (conv) => upsert(conv, {move: false}),
        onRead: (convId) => {
          const conv = state.rows.get(convId);
          if (conv) upsert({...conv, unread_count: 0}, {move: false});
          ctx.setUnread(convId, 0);
        },
        isOptedOut: (memberId) => state.optedOut.get(memberId),
      });
    }
    renderList();
  }

  function upsert(conv, {move}) {
    const before = state.rows.get(conv.id);
    state.rows.set(conv.id, {...(before || {}), ...conv});
    if (move || !before) sortOrder();
    renderList();
  }

  /* ---------- live events ---------- */

  function onEvent(event) {
    const data = event.data || {};
    if (event.type === "message.received") {
      const msg = data.message || data;
      const conv = data.conversation;
      if (conv) upsert(conv, {move: true});
      if (conv && msg.direction !== "outbound") {
        flash(conv.id);
        if (conv.id !== state.openId) announce(`New text from ${memberName(conv.member)}: ${msg.body}`);
      }
    } else if (event.type === "conversation.updated" && data.id) {
      const before = state.rows.get(data.id);
      upsert(data, {move: !before || before.last_message_at !== data.last_message_at});
    } else if (event.type === "member.opted_out" || event.type === "member.opted_in") {
      const memberId = data.member_id || data.id || (data.member && data.member.id);
      if (memberId) state.optedOut.set(memberId, event.type === "member.opted_out");
      renderList();
    }
    if (state.open) state.open.onEvent(event);
  }

  load();
  loadUsers();
  openConversation(ctx.params[0]);
  state.tick = setInterval(renderList, 60 * 1000);  // keep "2 min ago" honest

  return {
    onEvent,
    update(params) { openConversation(params[0]); },
    async refresh() {
      await load();
      if (state.open) await state.open.refresh();
    },
    unmount() {
      clearInterval(state.tick);
      if (state.open) state.open.close();
    },
  };
}
