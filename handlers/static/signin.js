// Sign in: email, password, a clear error sentence; nothing else.

import {api} from "./api.js";
import {h, fill, errorBox, busy} from "./dom.js";

export function mount(root, {onSignedIn}) {
  const email = h("input", {id: "signin-email", type: "email", name: "email", autocomplete: "username", required: true});
  const password = h("input", {id: "signin-password", type: "password", name: "password", autocomplete: "current-password", required: true});
  const error = errorBox();
  const submit = h("button.primary", {type: "submit"}, "Sign in");
  const form = h("form", {novalidate: true},
    h("label", {for: email.id}, "Email"), email,
    h("label", {for: password.id}, "Password"), password,
    error.el, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!email.value.trim() || !password.value) {
      error.show("Enter your email and password.");
      (email.value.trim() ? password : email).focus();
      return;
    }
    const ok = await busy(submit, error, async () => {
      await api.post("/auth/login", {email: email.value.trim(), password: password.value});
      return true;
    });
    if (ok) onSignedIn();
    else password.select();
  });
  fill(root, h("main.signin", {id: "main"},
    h("div.card",
      h("div.brand-mark", h("img", {src: new URL("./icon.svg", import.meta.url).pathname, alt: ""}), h("h1", {}, "Sign in to YWMessaging")),
      form)));
  email.focus();
  return {unmount() {}};
}
