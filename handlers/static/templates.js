// Saved replies: the church's templates (snippets) with their merge fields, previewed for
// an example member. Everyone can read them and use them from a compose box ("Saved
// reply…"); admins and owners add, edit and delete them.

import {api} from "./api.js";
import {h, fill, field, newId, errorBox, busy, confirmDialog, announce} from "./dom.js";
import {FIELDS, fieldsUsed, forgetTemplates, render} from "./merge.js";
import {counterText} from "./segments.js";

const EXAMPLE = {first_name: "Ada", last_name: "Moss"};

export function mount(main, ctx) {
  const canWrite = ctx.hasRole("admin");
  const error = errorBox();
  const list = h("div.template-list");
  const add = canWrite ? h("button.primary", {type: "button", onclick: () => edit(null)}, "New saved reply") : null;
  fill(main, h("h1", {}, "Saved replies"),
    h("p.muted", {}, "Reusable texts for replies and group sends. ",
      `Merge fields are filled in for each person: ${FIELDS.map((f) => `{${f}}`).join(", ")}; `,
      "add a fallback for an empty value with a bar, as in {first_name|friend}."),
    h("div.row", {}, add), error.el, list);
  const values = {...EXAMPLE, church_name: ctx.me.church.name};

  async function load() {
    error.clear();
    try {
      const rows = (await api.all("/templates")).sort((a, b) => a.name.localeCompare(b.name));
      fill(list, rows.length ? rows.map((t) => h("section.card.template", {dataset: {id: t.id}},
        h("h2", {}, t.name),
        h("p.template-body", {}, t.body),
        t.fields.length ? h("p.small.muted.template-preview", {}, `For ${EXAMPLE.first_name} ${EXAMPLE.last_name}: “${render(t.body, values)}”`) : null,
        canWrite ? h("div.row", {},
          h("button", {type: "button", onclick: () => edit(t)}, "Edit", h("span.visually-hidden", {}, ` ${t.name}`)),
          h("button.danger", {type: "button", onclick: () => remove(t)}, "Delete", h("span.visually-hidden", {}, ` ${t.name}`))) : null))
        : h("p.muted", {}, canWrite ? "No saved replies yet: add the texts you send often." : "No saved replies yet."));
    } catch (err) {
      error.show(err.message);
    }
  }

  async function edit(template) {
    if (await templateDialog(template, values)) { forgetTemplates(); load(); }
  }

  async function remove(template) {
    const sure = await confirmDialog({title: `Delete “${template.name}”?`, lines: ["Texts already sent are not changed."], confirmLabel: "Delete", danger: true});
    if (!sure) return;
    await busy(null, error, async () => {
      await api.del(`/templates/${template.id}`);
      forgetTemplates();
      announce("Saved reply deleted.");
      await load();
    });
  }

  load();
  return {refresh: load, unmount() {}};
}

function templateDialog(template, values) {
  return new Promise((resolve) => {
    const error = errorBox();
    const name = h("input", {value: template ? template.name : "", autocomplete: "off", maxlength: 100});
    const body = h("textarea", {rows: 5, value: template ? template.body : ""});
    const counter = h("p.counter", {});
    const preview = h("p.merge-preview", {role: "status"});
    const fieldPick = h("select", {id: newId("fld")}, h("option", {value: ""}, "Insert a field…"),
      FIELDS.map((f) => h("option", {value: f}, `{${f}}`)));
    const save = h("button.primary", {type: "submit"}, template ? "Save" : "Add");
    const titleId = newId("dlg");
    const form = h("form", {method: "dialog"},
      h("h2", {id: titleId}, template ? `Edit “${template.name}”` : "New saved reply"),
      field("Name", name).wrap, field("Text", body).wrap,
      h("div.row", {}, h("label.visually-hidden", {for: fieldPick.id}, "Insert a merge field"), fieldPick),
      counter, preview, error.el,
      h("div.row", {}, h("button", {type: "button", onclick: () => dialog.close()}, "Cancel"), save));
    const dialog = h("dialog", {"aria-labelledby": titleId}, form);
    function update() {
      const {unknown} = fieldsUsed(body.value);
      const merged = render(body.value, values);
      counter.textContent = counterText(merged);
      preview.textContent = unknown !== null ? `Unknown field {${unknown}}.` : `For ${EXAMPLE.first_name}: “${merged}”`;
      preview.classList.toggle("bad", unknown !== null);
    }
    body.addEventListener("input", update);
    fieldPick.addEventListener("change", () => {
      const start = body.selectionStart ?? body.value.length;
      const snippet = fieldPick.value === "first_name" ? "{first_name|friend}" : `{${fieldPick.value}}`;
      body.value = body.value.slice(0, start) + snippet + body.value.slice(body.selectionEnd ?? start);
      fieldPick.value = "";
      body.focus();
      update();
    });
    let result = false;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const payload = {name: name.value.trim(), body: body.value};
      const ok = await busy(save, error, async () => {
        if (template) await api.patch(`/templates/${template.id}`, payload);
        else await api.post("/templates", payload);
        return true;
      });
      if (ok) { result = true; announce(template ? "Saved reply updated." : "Saved reply added."); dialog.close(); }
    });
    dialog.addEventListener("close", () => { dialog.remove(); resolve(result); });
    document.body.append(dialog);
    update();
    dialog.showModal();
    name.focus();
  });
}
