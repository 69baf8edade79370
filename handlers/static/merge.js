// Merge fields and saved replies in the compose boxes: a mirror of
// server/sms/merge_fields.py ({first_name|fallback}, {{ and }} for braces), the
// "Saved reply" and "Insert a field" pickers, and the per-recipient preview line. The
// server merges for real when it sends; this only shows what it will do.

import {api} from "./api.js";
import {h, fill, newId} from "./dom.js";

export const DEFAULTS = {first_name: "friend", last_name: "", church_name: ""};
export const FIELDS = Object.keys(DEFAULTS);
const TOKEN = /\{\{|\}\}|\{([^{}|]*)(?:\|([^{}]*))?\}/g;
const LABELS = {first_name: "First name", last_name: "Last name", church_name: "Church name"};

export function hasFields(text) {
  return text.includes("{") || text.includes("}");
}

/** The fields `text` uses, each once; {unknown} names the first unknown one (or null). */
export function fieldsUsed(text) {
  const used = [];
  let unknown = null;
  for (const match of text.matchAll(TOKEN)) {
    if (match[0] === "{{" || match[0] === "}}") continue;
    const name = match[1].trim().toLowerCase();
    if (!(name in DEFAULTS)) { if (unknown === null) unknown = match[1].trim(); continue; }
    if (!used.includes(name)) used.push(name);
  }
  return {used, unknown};
}

/** `text` merged for one recipient: values {first_name, last_name, church_name}. */
export function render(text, values) {
  if (!hasFields(text)) return text;
  return text.replace(TOKEN, (token, rawName, fallback) => {
    if (token === "{{" || token === "}}") return token[0];
    const name = rawName.trim().toLowerCase();
    if (!(name in DEFAULTS)) return token;
    const value = String(values[name] || "").trim();
    if (value) return value;
    return fallback !== undefined ? fallback.trim() : DEFAULTS[name];
  });
}

export function valuesFor(member, churchName) {
  return {first_name: member && member.first_name, last_name: member && member.last_name, church_name: churchName};
}

/** Insert `snippet` at the caret of `textarea` and tell it (an input event). */
function insertAtCaret(textarea, snippet, replace = false) {
  if (replace) {
    textarea.value = snippet;
  } else {
    const start = textarea.selectionStart ?? textarea.value.length;
    const end = textarea.selectionEnd ?? start;
    textarea.value = textarea.value.slice(0, start) + snippet + textarea.value.slice(end);
    const caret = start + snippet.length;
    textarea.setSelectionRange(caret, caret);
  }
  textarea.dispatchEvent(new Event("input", {bubbles: true}));
  textarea.focus();
}

let cached = null;  // one list per page load; the templates screen drops it on change
export function forgetTemplates() { cached = null; }
async function templates() {
  if (!cached) cached = api.all("/templates").catch((err) => { cached = null; throw err; });
  return cached;
}

/**
 * The two pickers above a compose box: "Saved reply" (fills the box with a template)
 * and "Insert a field" (at the caret). Returns an element.
 */
export function composeTools(textarea) {
  const savedId = newId("tpl");
  const fieldId = newId("fld");
  const saved = h("select.compose-template", {id: savedId}, h("option", {value: ""}, "Saved reply…"));
  const fieldPick = h("select.compose-field", {id: fieldId}, h("option", {value: ""}, "Insert a field…"),
    FIELDS.map((name) => h("option", {value: name}, `${LABELS[name]} {${name}}`)));
  let list = [];
  saved.addEventListener("focus", load, {once: true});
  saved.addEventListener("change", () => {
    const template = list.find((t) => t.id === saved.value);
    saved.value = "";
    if (template) insertAtCaret(textarea, template.body, !textarea.value.trim());
  });
  fieldPick.addEventListener("change", () => {
    const name = fieldPick.value;
    fieldPick.value = "";
    if (name) insertAtCaret(textarea, name === "first_name" ? "{first_name|friend}" : `{${name}}`);
  });
  async function load() {
    try {
      list = [...await templates()].sort((a, b) => a.name.localeCompare(b.name));
      fill(saved, h("option", {value: ""}, list.length ? "Saved reply…" : "No saved replies yet"),
        list.map((t) => h("option", {value: t.id}, t.name)));
    } catch (_err) { /* the picker stays empty; typing still works */ }
  }
  load();
  return h("div.compose-tools", {},
    h("label.visually-hidden", {for: savedId}, "Use a saved reply"), saved,
    h("label.visually-hidden", {for: fieldId}, "Insert a merge field"), fieldPick);
}

/** The words under a compose box for a text with fields: what one recipient gets. */
export function previewLine(text, values, who) {
  const {unknown} = fieldsUsed(text);
  if (unknown !== null) return {text: `Unknown field {${unknown}}: use {first_name}, {last_name} or {church_name}.`, bad: true};
  if (!hasFields(text)) return {text: "", bad: false};
  return {text: `${who ? `${who} gets` : "Sends as"}: “${render(text, values)}”`, bad: false};
}
