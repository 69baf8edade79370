// The contact panel beside a conversation: name an unknown sender in place, their phone,
// email and groups, opt-in state with the history of consent changes, who the
// conversation is assigned to, and internal notes (kept for staff, never sent).
// Live: notes, renames, assignment and opt-in changes arrive as stream events.

import {api} from "./api.js";
import {h, fill, field, newId, errorBox, busy, announce} from "./dom.js";
import {dateTime, formatPhone, memberName, relativeTime} from "./format.js";

const NOTES_PAGE = 20;

const ACTION_WORDS = {
  opt_out: "Opted out", opt_in: "Opted in", help: "Asked for help", review: "Text to review",
};
const SOURCE_WORDS = {
  keyword: "by text", carrier: "at their carrier", staff: "by staff", api: "through the API",
  inbound: "by text", import: "by import",
};

function consentLine(change) {
  const action = ACTION_WORDS[change.action] || change.action;
  const how = change.keyword ? `texted ${change.keyword.toUpperCase()}` : (SOURCE_WORDS[change.source] || change.source);
  return `${action} · ${how}`;
}

/**
 * @param {HTMLElement} aside  where the panel renders
 * @param {object} ctx  app context (me)
 * @param {string} id  conversation id
 * @param {() => void} onUsers  called when the assignees were added to ctx.users
 */
export function open(aside, ctx, id, onUsers = () => {}) {
  const state = {contact: null, notes: new Map(), cursor: null, closed: false};
  const error = errorBox();
  const body = h("div.contact-body", {}, h("p.muted", {}, "Loading contact…"));
  fill(aside, h("h2", {}, "Contact"), error.el, body);

  /* ---------- name ---------- */

  const first = h("input", {autocomplete: "off"});
  const last = h("input", {autocomplete: "off"});
  const nameError = errorBox();
  const saveName = h("button", {type: "submit"}, "Save name");
  const nameForm = h("form.name-form", {},
    field("First name", first).wrap, field("Last name", last).wrap, nameError.el,
    h("div.row", {}, saveName));
  nameForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const payload = {first_name: first.value.trim(), last_name: last.value.trim()};
    if (!payload.first_name) { nameError.show("Give at least a first name."); first.focus(); return; }
    const data = await busy(saveName, nameError, async () =>
      (await api.patch(`/conversations/${id}/contact`, payload)).data);
    if (data) { state.contact = data; render(); announce(`Saved: ${memberName(data.member)}.`); }
  });

  /* ---------- assignment ---------- */

  const assign = h("select", {id: newId("assignee")});
  const assignError = errorBox();
  assign.addEventListener("change", async () => {
    const value = assign.value || null;
    const data = await busy(assign, assignError, async () =>
      (await api.patch(`/conversations/${id}`, {assigned_to: value})).data);
    if (data) { state.contact.assigned_to = data.assigned_to; announce("Assignment saved."); }
    renderAssign();
  });

  function renderAssign() {
    const c = state.contact;
    const options = [["", "Unassigned"]];
    for (const user of c.assignees) options.push([user.id, user.id === ctx.me.user.id ? `Me (${user.name})` : user.name]);
    if (c.assigned_to && !options.some(([v]) => v === c.assigned_to)) options.push([c.assigned_to, "A removed user"]);
    fill(assign, options.map(([value, text]) => h("option", {value, selected: (c.assigned_to || "") === value}, text)));
  }

  /* ---------- notes ---------- */

  const noteText = h("textarea", {id: newId("note"), rows: 2, placeholder: "Only staff see notes"});
  const noteError = errorBox();
  const addNote = h("button", {type: "submit"}, "Add note");
  const noteForm = h("form.note-form", {},
    h("label", {for: noteText.id}, "Add an internal note"), noteText, noteError.el,
    h("div.row", {}, addNote));
  const noteList = h("ul.notes", {"aria-label": "Notes", "aria-live": "polite"});
  const moreNotes = h("button.link", {type: "button", hidden: true, onclick: () => loadNotes(true)}, "Older notes");
  noteForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = noteText.value.trim();
    if (!text) { noteError.show("Write the note first."); noteText.focus(); return; }
    const note = await busy(addNote, noteError, async () =>
      (await api.post(`/conversations/${id}/notes`, {body: text})).data);
    if (note) { noteText.value = ""; state.notes.set(note.id, note); renderNotes(); announce("Note saved."); }
  });

  function renderNotes() {
    const notes = [...state.notes.values()].sort((a, b) => b.created_at.localeCompare(a.created_at));
    fill(noteList, notes.length ? notes.map((n) => h("li.note", {dataset: {id: n.id}},
      h("p.note-body", {}, n.body),
      h("p.muted.small", {}, n.author ? n.author.name : "A removed user", " · ",
        h("time", {datetime: n.created_at, title: dateTime(n.created_at)}, relativeTime(n.created_at)))))
      : h("li.muted.small", {}, "No notes yet."));
    moreNotes.hidden = !state.cursor;
  }

  async function loadNotes(older = false) {
    try {
      const page = await api.get(`/conversations/${id}/notes`, {limit: NOTES_PAGE, cursor: older ? state.cursor : null});
      if (state.closed) return;
      if (!older) state.notes.clear();
      for (const n of page.data) state.notes.set(n.id, n);
      state.cursor = page.meta.next_cursor || null;
      renderNotes();
    } catch (err) { noteError.show(err.message); }
  }

  /* ---------- the panel ---------- */

  function render() {
    const c = state.contact;
    const m = c.member;
    const named = Boolean((m.first_name || m.last_name).trim());
    if (document.activeElement !== first && document.activeElement !== last) {
      first.value = m.first_name;
      last.value = m.last_name;
    }
    const optedIn = m.opt_in_sms && !m.opted_out_at;
    renderAssign();
    fill(body,
      h("section.contact-who", {"aria-label": "Who"},
        h("p.contact-name", {}, named ? memberName(m) : "Unknown sender"),
        h("p.small", {}, formatPhone(m.phone)),
        m.email ? h("p.small", {}, m.email) : null,
        named ? null : h("p.field-hint", {}, "Name this sender so everyone knows who is texting."),
        nameForm),
      h("section", {"aria-label": "Texts"},
        h("h3", {}, "Texts"),
        optedIn ? h("span.badge.ok", {}, "Opted in")
          : h("span.badge.optout", {}, m.opted_out_at ? `Opted out ${dateTime(m.opted_out_at)}` : "Opted out"),
        c.consent_history.length ? h("ul.consent", {}, c.consent_history.map((x) => h("li.small", {},
          consentLine(x), " · ", h("time", {datetime: x.created_at}, dateTime(x.created_at)))))
          : h("p.muted.small", {}, "No consent changes recorded.")),
      h("section", {"aria-label": "Groups"},
        h("h3", {}, "Groups"),
        m.groups.length ? h("ul.chips", {}, m.groups.map((g) => h("li.badge.group", {}, g.name)))
          : h("p.muted.small", {}, "Not in any group.")),
      h("section", {},
        h("h3", {}, h("label", {for: assign.id}, "Assigned to")), assign, assignError.el),
      h("section", {"aria-label": "Notes"},
        h("h3", {}, "Notes"), noteForm, noteList, moreNotes));
  }

  async function load() {
    error.clear();
    try {
      const {data} = await api.get(`/conversations/${id}/contact`);
      if (state.closed) return;
      state.contact = data;
      // Everyone can see who a conversation is assigned to (only owners may list users).
      if (ctx.users && data.assignees.some((u) => !ctx.users.has(u.id))) {
        for (const u of data.assignees) if (!ctx.users.has(u.id)) ctx.users.set(u.id, u);
        onUsers();
      }
      render();
      renderNotes();
    } catch (err) {
      if (!state.closed) error.show(err.message);
    }
  }

  function onEvent(event) {
    const data = event.data || {};
    const c = state.contact;
    if (!c) return;
    if (event.type === "note.created" && data.conversation_id === id) {
      state.notes.set(data.id, data);
      renderNotes();
    } else if (event.type === "conversation.updated" && data.id === id) {
      const m = data.member || {};
      const renamed = m.first_name !== c.member.first_name || m.last_name !== c.member.last_name;
      c.assigned_to = data.assigned_to;
      if (renamed) { c.member = {...c.member, first_name: m.first_name, last_name: m.last_name}; render(); } else renderAssign();
    } else if ((event.type === "member.opted_out" || event.type === "member.opted_in") && data.member_id === c.member.id) {
      load();  // the new ledger row comes with the member's state
    }
  }

  load();
  loadNotes();
  return {
    onEvent,
    refresh() { load(); loadNotes(); },
    close() { state.closed = true; },
  };
}
