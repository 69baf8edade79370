// Members and groups: a searchable, paged member table with add/edit/delete, CSV import
// with its result summary, and group management (create, rename, delete, members).

import {api, request} from "./api.js";
import {h, fill, field, newId, errorBox, busy, confirmDialog, announce} from "./dom.js";
import {dateTime, formatPhone, memberName, plural} from "./format.js";
import {startConversation} from "./newconversation.js";
import {newGroupNames} from "./csvgroups.js";

const PAGE = 25;

export function mount(main, ctx) {
  const tab = ctx.path === "groups" ? "groups" : "members";
  const tabs = h("nav.tabs", {"aria-label": "Members and groups"},
    h("a", {href: "#/members", "aria-current": tab === "members" ? "page" : null}, "Members"),
    h("a", {href: "#/groups", "aria-current": tab === "groups" ? "page" : null}, "Groups"));
  const body = h("div");
  fill(main, h("h1", {}, "Members & groups"), tabs, body);
  const view = tab === "groups" ? groupsView(body, ctx) : membersView(body, ctx);
  return {update: view.update || (() => {}), refresh: view.refresh, onEvent: view.onEvent, unmount() {}};
}

/* ---------- members ---------- */

function membersView(root, ctx) {
  const canWrite = ctx.hasRole("admin");
  const state = {q: "", groupId: "", cursors: [null], page: 0, next: null, groups: []};
  const error = errorBox();
  const search = h("input", {id: newId("q"), type: "search", placeholder: "Name, phone or last 4 digits", autocomplete: "off"});
  const groupFilter = h("select", {id: newId("grp")}, h("option", {value: ""}, "All groups"));
  const tbody = h("tbody");
  const prev = h("button", {type: "button", onclick: () => go(-1)}, "Previous");
  const next = h("button", {type: "button", onclick: () => go(1)}, "Next");
  const pageInfo = h("span.muted.small", {role: "status"});
  const total = h("p.member-total", {role: "status"});  // meta.total: every page's members
  const importBox = h("div");
  fill(root,
    h("div.row", {},
      h("div.grow", {}, field("Search members", search).wrap),
      h("div", {}, field("Group", groupFilter).wrap),
      canWrite ? h("button.primary", {type: "button", onclick: () => editMember(null)}, "Add member") : null),
    canWrite ? importSection(importBox, () => load()) : null,
    error.el, total,
    // A table on a desktop; at phone width each row is a card (app.css, .members-table).
    h("div.table-wrap", {}, h("table.members-table", {},
      h("caption.visually-hidden", {}, "Members"),
      h("thead", {}, h("tr", {}, ["Name", "Phone", "Email", "Groups", "Texts", "Added"].map((t) => h("th", {scope: "col"}, t)))),
      tbody)),
    h("div.pager", {}, pageInfo, prev, next));

  let debounce = null;
  search.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { state.q = search.value.trim(); reset(); }, 250);
  });
  groupFilter.addEventListener("change", () => { state.groupId = groupFilter.value; reset(); });

  function reset() { state.cursors = [null]; state.page = 0; load(); }
  function go(step) {
    if (step > 0 && !state.next) return;
    if (step > 0) state.cursors[state.page + 1] = state.next;
    state.page = Math.max(0, state.page + step);
    load();
  }

  function groupNames(member) {
    return (member.groups || []).map((g) => (typeof g === "string" ? (state.groups.find((x) => x.id === g) || {}).name || "" : g.name)).filter(Boolean).join(", ");
  }

  let loadSeq = 0;
  async function load() {
    error.clear();
    const seq = ++loadSeq;  // typing fast: only the newest search may fill the table
    try {
      const page = await api.get("/members", {q: state.q, group_id: state.groupId, limit: PAGE, cursor: state.cursors[state.page]});
      if (seq !== loadSeq) return;
      state.next = page.meta.next_cursor || null;
      fill(tbody, page.data.length ? page.data.map((m) => h("tr", {},
        h("td.member-name", {}, canWrite ? h("button.link", {type: "button", onclick: () => editMember(m)}, memberName(m)) : memberName(m)),
        h("td", {dataset: {label: "Phone"}}, formatPhone(m.phone)), h("td", {dataset: {label: "Email"}}, m.email || ""),
        h("td", {dataset: {label: "Groups"}}, groupNames(m)),
        h("td", {dataset: {label: "Texts"}}, m.opt_in_sms ? h("span.badge.ok", {}, "Opted in") : h("span.badge.optout", {}, "Opted out"),
          m.opt_in_sms ? messageButton(ctx, m) : null),
        h("td.small", {dataset: {label: "Added"}}, dateTime(m.created_at))))
        : h("tr", {}, h("td", {colspan: 6}, state.q ? "No members match." : "No members yet.")));
      prev.disabled = state.page === 0;
      next.disabled = !state.next;
      pageInfo.textContent = `Page ${state.page + 1}`;
      const n = page.meta.total;  // counted on the first page only: later pages keep it
      if (typeof n === "number") total.textContent = state.q || state.groupId ? `${plural(n, "member")} found` : plural(n, "member");
    } catch (err) {
      error.show(err.message);
    }
  }

  async function loadGroups() {
    try {
      state.groups = await api.all("/groups");
      for (const g of state.groups) groupFilter.append(h("option", {value: g.id}, g.name));
    } catch (_err) { /* the filter just stays "All groups" */ }
  }

  async function editMember(member) {
    const saved = await memberDialog(member);
    if (saved) load();
  }

  loadGroups().then(load);
  return {refresh: load};
}

/** "Message": text this member (opens their conversation once sent). */
function messageButton(ctx, member) {
  return h("button.link.message-member", {type: "button", onclick: () => startConversation(ctx, {member})},
    "Message", h("span.visually-hidden", {}, ` ${memberName(member)}`));
}

function memberDialog(member) {
  return new Promise((resolve) => {
    const error = errorBox();
    const first = h("input", {value: member ? member.first_name : "", autocomplete: "off"});
    const last = h("input", {value: member ? member.last_name : "", autocomplete: "off"});
    const phone = h("input", {type: "tel", value: member ? member.phone : "", autocomplete: "off"});
    const email = h("input", {type: "email", value: member ? member.email || "" : "", autocomplete: "off"});
    const optIn = h("input", {type: "checkbox", checked: member ? member.opt_in_sms : true});
    const save = h("button.primary", {type: "submit"}, member ? "Save" : "Add member");
    const titleId = newId("dlg");
    const form = h("form", {method: "dialog"},
      h("h2", {id: titleId}, member ? `Edit ${memberName(member)}` : "Add a member"),
      field("First name", first).wrap, field("Last name", last).wrap,
      field("Mobile phone", phone, "US numbers in any common format, e.g. (555) 123-4567").wrap,
      field("Email (optional)", email).wrap,
      h("label.inline", {}, optIn, "Agreed to receive texts"),
      error.el,
      h("div.row", {},
        member ? h("button.danger", {type: "button", onclick: remove}, "Delete") : null,
        h("button", {type: "button", onclick: () => dialog.close()}, "Cancel"), save));
    const dialog = h("dialog", {"aria-labelledby": titleId}, form);
    let result = false;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const payload = {first_name: first.value.trim(), last_name: last.value.trim(), phone: phone.value.trim()};
      if (email.value.trim() || member) payload.email = email.value.trim() || null;
      payload.opt_in_sms = optIn.checked;
      const ok = await busy(save, error, async () => {
        if (member) await api.patch(`/members/${member.id}`, payload);
        else await api.post("/members", payload);
        return true;
      });
      if (ok) { result = true; announce(member ? "Member saved." : "Member added."); dialog.close(); }
    });
    async function remove() {
      const sure = await confirmDialog({title: `Delete ${memberName(member)}?`, lines: ["Their conversation history stays; they leave every group."], confirmLabel: "Delete", danger: true});
      if (!sure) return;
      const ok = await busy(null, error, async () => { await api.del(`/members/${member.id}`); return true; });
      if (ok) { result = true; announce("Member deleted."); dialog.close(); }
    }
    dialog.addEventListener("close", () => { dialog.remove(); resolve(result); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

function importSection(root, onDone) {
  const file = h("input", {type: "file", accept: ".csv,text/csv"});
  const error = errorBox();
  const summary = h("div", {role: "status", "aria-live": "polite"});
  const upload = h("button", {type: "submit"}, "Import");
  const form = h("form", {},
    field("Import members from a CSV file", file, "Header row: first_name,last_name,phone and optionally email,groups").wrap,
    h("div.row", {}, upload), error.el, summary);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!file.files.length) return error.show("Choose a CSV file first.");
    // The import creates groups it does not know: name them and ask first.
    const fresh = await busy(upload, error, async () => newGroupNames(await file.files[0].text(), await api.all("/groups")));
    if (!fresh) return undefined;
    if (fresh.length && !await confirmDialog({
      title: fresh.length === 1 ? "Create a new group?" : `Create ${fresh.length} new groups?`,
      lines: [`This file names ${fresh.length === 1 ? "a group that does not exist" : "groups that do not exist"} yet: ${fresh.slice(0, 20).join(", ")}${fresh.length > 20 ? ", …" : ""}.`,
        "Importing creates them. Cancel to fix the file first (check the spelling)."],
      confirmLabel: fresh.length === 1 ? "Create it and import" : "Create them and import"})) {
      return error.show("Nothing imported.");
    }
    const result = await busy(upload, error, async () =>
      (await api.post("/members/import", file.files[0], {contentType: "text/csv"})).data);
    if (!result) return undefined;
    const errors = result.errors || [];
    fill(summary, h("p.notice", {},
      `${plural(result.created, "member")} created · ${result.updated.toLocaleString()} updated · ${result.skipped.toLocaleString()} skipped · ${plural(errors.length, "error")}`),
    errors.length ? h("div.table-wrap", {}, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Row"), h("th", {}, "Field"), h("th", {}, "Problem"))),
      h("tbody", {}, errors.slice(0, 200).map((e) => h("tr", {}, h("td", {}, String(e.row)), h("td", {}, e.field || ""), h("td", {}, e.message))))))
      : null);
    onDone();
    return undefined;
  });
  return fill(root, h("details.card", {}, h("summary", {}, "Import from CSV"), form));
}

/* ---------- groups ---------- */

function groupsView(root, ctx) {
  const canWrite = ctx.hasRole("admin");
  const error = errorBox();
  const list = h("div");
  const detail = h("div");
  const name = h("input", {autocomplete: "off"});
  const add = h("button.primary", {type: "submit"}, "Create group");
  const createForm = canWrite ? h("form.row", {}, h("div.grow", {}, field("New group name", name).wrap), add) : null;
  fill(root, h("div.grid2", {}, h("section.card", {}, h("h2", {}, "Groups"), createForm, error.el, list), detail));

  if (createForm) createForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!name.value.trim()) return error.show("Give the group a name.");
    const ok = await busy(add, error, async () => { await api.post("/groups", {name: name.value.trim()}); return true; });
    if (ok) { name.value = ""; announce("Group created."); load(); }
    return undefined;
  });

  async function load() {
    error.clear();
    try {
      const groups = await api.all("/groups");
      fill(list, groups.length ? h("div.table-wrap", {}, h("table", {},
        h("thead", {}, h("tr", {}, h("th", {scope: "col"}, "Name"), h("th", {scope: "col"}, "Members"), h("th", {scope: "col"}, "Created"))),
        h("tbody", {}, groups.map((g) => h("tr", {},
          h("td", {}, h("button.link", {type: "button", onclick: () => showGroup(g)}, g.name)),
          h("td", {}, g.member_count.toLocaleString()), h("td.small", {}, dateTime(g.created_at)))))))
        : h("p.muted", {}, "No groups yet."));
    } catch (err) {
      error.show(err.message);
    }
  }

  async function showGroup(group) {
    const gError = errorBox();
    const rows = h("tbody");
    const rename = h("input", {value: group.name});
    const search = h("input", {type: "search", placeholder: "Find a member to add", autocomplete: "off"});
    const results = h("ul");
    fill(detail, h("section.card", {"aria-live": "polite"},
      h("h2", {}, group.name),
      canWrite ? h("form.row", {onsubmit: async (e) => {
        e.preventDefault();
        await busy(null, gError, async () => { await api.patch(`/groups/${group.id}`, {name: rename.value.trim()}); group.name = rename.value.trim(); announce("Group renamed."); load(); });
      }}, h("div.grow", {}, field("Name", rename).wrap), h("button", {type: "submit"}, "Rename"),
      h("button.danger", {type: "button", onclick: async () => {
        if (!await confirmDialog({title: `Delete the group ${group.name}?`, lines: ["The members stay; only the group goes."], confirmLabel: "Delete group", danger: true})) return;
        await busy(null, gError, async () => { await api.del(`/groups/${group.id}`); fill(detail); announce("Group deleted."); load(); });
      }}, "Delete")) : null,
      canWrite ? h("div", {}, field("Add members", search).wrap, results) : null,
      gError.el,
      h("h3", {}, "Members"),
      h("div.table-wrap", {}, h("table", {}, h("tbody", {}, rows)))));
    let debounce = null;
    search.addEventListener("input", () => {
      clearTimeout(debounce);
      debounce = setTimeout(async () => {
        if (!search.value.trim()) return fill(results);
        try {
          const {data} = await api.get("/members", {q: search.value.trim(), limit: 20});
          // Members already in the group are not offered again.
          const inGroup = (m) => (m.groups || []).some((g) => (typeof g === "string" ? g : g.id) === group.id);
          const offer = data.filter((m) => !inGroup(m)).slice(0, 8);
          if (!offer.length) return fill(results, h("li.muted", {}, data.length ? "Everyone found is already in this group." : "No members match."));
          fill(results, offer.map((m) => h("li", {}, `${memberName(m)} · ${formatPhone(m.phone)} `,
            h("button.link", {type: "button", onclick: async () => {
              await busy(null, gError, async () => {
                await api.post(`/groups/${group.id}/members`, {member_ids: [m.id]});
                announce(`${memberName(m)} added.`); loadMembers(); load();
                search.dispatchEvent(new Event("input"));  // the added member leaves the list
              });
            }}, "Add"))));
        } catch (err) { gError.show(err.message); }
        return undefined;
      }, 250);
    });
    async function loadMembers() {
      try {
        const {data} = await api.get(`/groups/${group.id}/members`, {limit: 200});
        fill(rows, data.length ? data.map((m) => h("tr", {}, h("td", {}, memberName(m)), h("td", {}, formatPhone(m.phone)),
          h("td", {}, canWrite ? h("button.link", {type: "button", onclick: async () => {
            await busy(null, gError, async () => {
              await request("DELETE", `/groups/${group.id}/members`, {body: {member_ids: [m.id]}});
              announce(`${memberName(m)} removed.`); loadMembers(); load();
            });
          }}, "Remove") : null)))
          : h("tr", {}, h("td", {}, "No members in this group yet.")));
      } catch (err) { gError.show(err.message); }
    }
    loadMembers();
  }

  load();
  return {refresh: load};
}
