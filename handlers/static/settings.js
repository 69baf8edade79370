// Settings (owner): the church profile and help text, a pointer to the Numbers screen,
// staff users and roles. API keys and webhooks join here when those routes exist.

import {api} from "./api.js";
import {h, fill, field, newId, errorBox, busy, confirmDialog, announce} from "./dom.js";
import {dateTime} from "./format.js";

const ROLES = ["staff", "admin", "owner"];

export function mount(main, ctx) {
  const church = h("section.card");
  const numbers = h("section.card");
  const users = h("section.card");
  fill(main, h("h1", {}, "Settings"), h("div.grid2", {}, church, numbers), users);
  const parts = [churchSection(church), numbersSection(numbers), usersSection(users, ctx)];
  return {refresh: () => Promise.all(parts.map((p) => p())), unmount() {}};
}

function churchSection(root) {
  const error = errorBox();
  const name = h("input", {autocomplete: "organization"});
  const zones = h("datalist", {id: newId("zones")},
    (Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : []).map((z) => h("option", {value: z})));
  const timezone = h("input", {autocomplete: "off", placeholder: "America/New_York", list: zones.id});
  const help = h("textarea", {rows: 3});
  const optIn = h("input", {type: "checkbox"});
  const save = h("button.primary", {type: "submit"}, "Save");
  // A visible confirmation beside the button (the announcer alone is for screen readers).
  const saved = h("span.saved", {role: "status"});
  const form = h("form", {},
    h("h2", {}, "Church"),
    field("Church name", name).wrap,
    field("Time zone", timezone, "An IANA name such as America/Chicago").wrap, zones,
    field("HELP reply text", help, "Sent when someone texts HELP").wrap,
    h("label.inline", {}, optIn, "Opt in people who text us first"),
    error.el, h("div.row", {}, save, saved));
  fill(root, form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    saved.textContent = "";
    const ok = await busy(save, error, async () => {
      await api.patch("/church", {name: name.value.trim(), timezone: timezone.value.trim(),
        help_text: help.value, unknown_sender_opt_in: optIn.checked});
      return true;
    });
    if (ok) {
      saved.textContent = `✓ Saved at ${new Date().toLocaleTimeString(undefined, {hour: "numeric", minute: "2-digit"})}`;
      announce("Church settings saved.");
    }
  });
  async function load() {
    try {
      const {data} = await api.get("/church");
      name.value = data.name; timezone.value = data.timezone; help.value = data.help_text || "";
      optIn.checked = Boolean(data.unknown_sender_opt_in);
    } catch (err) { error.show(err.message); }
  }
  load();
  return load;
}

function numbersSection(root) {
  // Numbers have their own screen (status, reasons, default, add/remove).
  fill(root, h("h2", {}, "Sending numbers"),
    h("p", {}, "Each number's status, the default number, and adding or removing numbers are on the ",
      h("a", {href: "#/numbers"}, "Numbers screen"), "."));
  return async () => {};
}

function usersSection(root, ctx) {
  const error = errorBox();
  const tbody = h("tbody");
  const email = h("input", {type: "email", autocomplete: "off"});
  const name = h("input", {autocomplete: "off"});
  const role = h("select", {}, ROLES.map((r) => h("option", {value: r}, r)));
  const password = h("input", {type: "password", autocomplete: "new-password"});
  const add = h("button.primary", {type: "submit"}, "Add user");
  const form = h("form", {}, h("div.grid2", {},
    field("Name", name).wrap, field("Email", email).wrap, field("Role", role).wrap,
    field("Temporary password", password, "At least 8 characters; they can change it later").wrap), h("div.row", {}, add));
  fill(root, h("h2", {}, "Staff users"), error.el,
    h("div.table-wrap", {}, h("table", {},
      h("thead", {}, h("tr", {}, ["Name", "Email", "Role", "Added"].map((t) => h("th", {scope: "col"}, t)),
        h("th", {scope: "col"}, h("span.visually-hidden", {}, "Actions")))), tbody)),
    h("details", {}, h("summary", {}, "Add a staff user"), form));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ok = await busy(add, error, async () => {
      await api.post("/users", {email: email.value.trim(), name: name.value.trim(), role: role.value, password: password.value});
      return true;
    });
    if (ok) { email.value = ""; name.value = ""; password.value = ""; announce("User added."); load(); }
  });
  async function load() {
    try {
      const rows = await api.all("/users");
      fill(tbody, rows.map((u) => {
        const select = h("select", {id: newId("role"), "aria-label": `Role of ${u.name}`}, ROLES.map((r) => h("option", {value: r, selected: u.role === r}, r)));
        select.addEventListener("change", async () => {
          const ok = await busy(null, error, async () => { await api.patch(`/users/${u.id}`, {role: select.value}); return true; });
          if (ok) announce(`${u.name} is now ${select.value}.`); else select.value = u.role;
        });
        return h("tr", {}, h("td", {}, u.name), h("td", {}, u.email), h("td", {}, select), h("td.small", {}, dateTime(u.created_at)),
          h("td", {}, u.id === ctx.me.user.id ? h("span.muted.small", {}, "You") : h("button.link", {type: "button", onclick: async () => {
            if (!await confirmDialog({title: `Remove ${u.name}?`, lines: ["They are signed out at once."], confirmLabel: "Remove", danger: true})) return;
            await busy(null, error, async () => { await api.del(`/users/${u.id}`); announce(`${u.name} removed.`); load(); });
          }}, "Remove")));
      }));
    } catch (err) { error.show(err.message); }
  }
  load();
  return load;
}
