// Numbers: the church's sending numbers, each with its status in plain words, why it is
// in that state and what to do (from the API's status_reason / status_action), which one
// is the default sender, and for the owner: add, check again (after fixing it at the
// carrier, or with a messaging profile id) and remove. Other roles see it read-only.
// Live: a `number.updated` stream event (the carrier set a number up, or could not)
// reads the list again.

import {api} from "./api.js";
import {h, fill, field, newId, errorBox, busy, confirmDialog, announce} from "./dom.js";
import {dateTime, formatPhone} from "./format.js";

const STATUS = {
  linked: {badge: "ok", word: "Ready"},
  pending: {badge: "warn", word: "Setting up"},
  failed: {badge: "optout", word: "Needs attention"},
};

export function mount(main, ctx) {
  const isOwner = ctx.hasRole("owner");
  const error = errorBox();
  const list = h("div.number-list");
  fill(main, h("h1", {}, "Sending numbers"),
    h("p.muted", {}, "Texts go out from the default number unless a send names another. Texts to any of these numbers arrive in the inbox."),
    error.el, list,
    isOwner ? addSection(() => load()) : h("p.notice", {}, "Only the church owner can add, change or remove numbers."));

  async function load() {
    try {
      const rows = await api.all("/numbers");
      fill(list, rows.length ? rows.map((n) => numberCard(n, isOwner, load)) : h("p.card.muted", {}, "No sending numbers yet."));
    } catch (err) { error.show(err.message); }
  }
  let timer = null;
  function onEvent(event) {
    if (event.type !== "number.updated") return;
    clearTimeout(timer);
    timer = setTimeout(load, 200);  // a linking pass changes several numbers at once
  }
  load();
  return {refresh: load, onEvent, unmount() { clearTimeout(timer); }};
}

function numberCard(n, isOwner, reload) {
  const status = STATUS[n.status] || {badge: "warn", word: n.status};
  const error = errorBox();
  const headingId = newId("num");
  const card = h("article.card.number", {"aria-labelledby": headingId, dataset: {status: n.status}},
    h("div.row", {},
      h("h2.grow", {id: headingId}, formatPhone(n.phone)),
      n.is_default ? h("span.badge.assignee", {}, "Default") : null,
      h(`span.badge.${status.badge}.number-status`, {}, status.word)),
    h("p.number-reason", {}, n.status_reason),
    n.status_action ? h("p.number-action", {}, h("strong", {}, "What to do: "), n.status_action) : null,
    h("dl.number-facts", {},
      h("dt", {}, "Carrier"), h("dd", {}, n.provider === "telnyx" ? "Telnyx" : "Twilio"),
      h("dt", {}, "Messaging profile"), h("dd", {}, n.messaging_profile_id || "None given"),
      h("dt", {}, "Texts per second"), h("dd", {}, String(n.mps)),
      h("dt", {}, "Added"), h("dd", {}, dateTime(n.created_at)),
      n.link_error ? [h("dt", {}, "Carrier said"), h("dd.small", {}, n.link_error)] : null),
    error.el);
  if (isOwner) card.append(ownerActions(n, error, reload));
  return card;
}

function ownerActions(n, error, reload) {
  const label = formatPhone(n.phone);
  const profile = h("input", {autocomplete: "off", value: n.messaging_profile_id || ""});
  const save = h("button", {type: "submit"}, "Save and check again");
  const form = h("form", {}, field("Messaging profile id (Telnyx)", profile,
    "Leave empty when the number is attached to a profile in the Telnyx portal").wrap, h("div.row", {}, save));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ok = await busy(save, error, async () => {
      await api.patch(`/numbers/${n.id}`, {messaging_profile_id: profile.value.trim() || null});
      return true;
    });
    if (ok) { announce(`${label} will be checked with the carrier again.`); reload(); }
  });
  const again = h("button", {type: "button", onclick: async () => {
    const ok = await busy(again, error, async () => { await api.patch(`/numbers/${n.id}`, {mps: n.mps}); return true; });
    if (ok) { announce(`${label} will be checked with the carrier again.`); reload(); }
  }}, "Check again", h("span.visually-hidden", {}, ` ${label}`));
  const remove = h("button.danger", {type: "button", onclick: async () => {
    const lines = ["Texts to this number will no longer reach the inbox."];
    if (n.is_default) lines.push("It is the default number: the next oldest number becomes the default.");
    if (!await confirmDialog({title: `Remove ${label}?`, lines, confirmLabel: "Remove", danger: true})) return;
    const ok = await busy(remove, error, async () => { await api.del(`/numbers/${n.id}`); return true; });
    if (ok) { announce(`${label} removed.`); reload(); }
  }}, "Remove", h("span.visually-hidden", {}, ` ${label}`));
  return h("div", {},
    h("div.row", {}, n.status !== "linked" ? again : null, remove),
    n.provider === "telnyx" ? h("details", {}, h("summary", {}, "Change the messaging profile"), form) : null);
}

function addSection(onAdded) {
  const error = errorBox();
  const phone = h("input", {type: "tel", autocomplete: "off"});
  const provider = h("select", {}, h("option", {value: "telnyx"}, "Telnyx"), h("option", {value: "twilio"}, "Twilio"));
  const profile = h("input", {autocomplete: "off"});
  const mps = h("input", {type: "number", min: 1, max: 1000, value: ""});
  const add = h("button.primary", {type: "submit"}, "Add number");
  const form = h("form", {}, h("div.grid2", {},
    field("Phone number", phone, "A number the church's carrier account holds").wrap, field("Carrier", provider).wrap,
    field("Messaging profile id (Telnyx, optional)", profile).wrap,
    field("Texts per second (optional)", mps, "Leave empty for the carrier's usual rate").wrap),
  error.el, h("div.row", {}, add));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {phone: phone.value.trim(), provider: provider.value};
    if (profile.value.trim()) body.messaging_profile_id = profile.value.trim();
    if (mps.value) body.mps = Number(mps.value);
    const ok = await busy(add, error, async () => { await api.post("/numbers", body); return true; });
    if (ok) { phone.value = ""; profile.value = ""; mps.value = ""; announce("Number added."); onAdded(); }
  });
  return h("section.card", {}, h("h2", {}, "Add a number"), form);
}
