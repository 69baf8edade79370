// Tiny DOM helpers. Text always goes in through textContent, never innerHTML, so nothing
// a member texts us can become markup; handlers attach with addEventListener (the CSP
// forbids inline handlers and styles).

/** h("button.primary", {type: "button", onclick: fn}, "Send") → element. */
export function h(tag, attrs = {}, ...children) {
  if (attrs === null || typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs)) {
    children.unshift(attrs);  // h("p", "text") and h("div", child, …) need no empty {}
    attrs = {};
  }
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = [el.className, value].filter(Boolean).join(" ");
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "value" || (key in el && typeof value !== "string")) {
      el[key] = value;  // properties such as checked, disabled, value
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace everything inside `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
/** A fresh id for label/aria pairs. */
export function newId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form control: returns {wrap, input}. */
export function field(label, control, hint) {
  const id = control.id || newId();
  control.id = id;
  const hintEl = hint ? h("p.field-hint", {id: `${id}-hint`}, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return {wrap: h("div", {}, h("label", {for: id}, label), control, hintEl), input: control};
}

/** Say something to screen readers through the page's polite live region. */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  // A fresh text node after a tick makes screen readers read repeated messages too.
  setTimeout(() => { region.textContent = text; }, 50);
}

/** An error box holding a plain sentence (role=alert so it is read at once). */
export function errorBox() {
  const box = h("p.error-text", {role: "alert", hidden: true});
  return {
    el: box,
    show(message) { box.textContent = message; box.hidden = false; },
    clear() { box.textContent = ""; box.hidden = true; },
  };
}

/** A modal <dialog> asking to confirm; resolves true or false. */
export function confirmDialog({title, lines = [], confirmLabel = "Confirm", danger = false}) {
  return new Promise((resolve) => {
    const titleId = newId("dlg");
    const dialog = h("dialog", {"aria-labelledby": titleId},
      h("h2", {id: titleId}, title),
      lines.map((line) => h("p", {}, line)),
      h("div.row",
        h("button", {type: "button", value: "cancel", onclick: () => dialog.close("cancel")}, "Cancel"),
        h(danger ? "button.danger" : "button.primary",
          {type: "button", onclick: () => dialog.close("ok")}, confirmLabel)));
    dialog.addEventListener("close", () => { dialog.remove(); resolve(dialog.returnValue === "ok"); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Run an async action with the button disabled; errors go to `box` as plain words. */
export async function busy(button, box, action) {
  if (box) box.clear();
  const was = button ? button.disabled : false;
  if (button) button.disabled = true;
  try {
    return await action();
  } catch (err) {
    if (box) box.show(err.message || "Something went wrong. Try again.");
    else throw err;
    return undefined;
  } finally {
    if (button) button.disabled = was;
  }
}

/** Enter sends the form, Shift+Enter starts a new line (not while an IME composes). */
export function submitOnEnter(textarea, form) {
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
}
