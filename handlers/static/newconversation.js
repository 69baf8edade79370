// Start a text: a dialog that picks a member (search by name or phone) unless one is
// given, composes the first text with the segment counter, and sends it with
// POST /conversations. On success the app opens that conversation in the inbox.

import {api} from "./api.js";
import {h, fill, newId, errorBox, announce, submitOnEnter} from "./dom.js";
import {formatPhone, memberName} from "./format.js";
import {counterText, segmentInfo} from "./segments.js";
import {composeTools, previewLine, render, valuesFor} from "./merge.js";

const RESULTS = 8;

function optedOut(member) {
  return member.opt_in_sms === false || Boolean(member.opted_out_at);
}

/**
 * @param {object} ctx  the app context (navigate)
 * @param {{member?: object}} options  a member to text; else the dialog asks for one
 * @returns {Promise<object|null>} the started conversation, or null when cancelled
 */
export function startConversation(ctx, {member = null} = {}) {
  return new Promise((resolve) => {
    let chosen = member;
    let result = null;
    let idempotencyKey = null;  // one per text: a retried send never texts twice
    const titleId = newId("dlg");
    const error = errorBox();
    const search = h("input", {id: newId("who"), type: "search", autocomplete: "off", placeholder: "Name or phone number"});
    const results = h("ul.member-pick", {"aria-label": "Matching members"});
    const status = h("p.muted.small", {role: "status", "aria-live": "polite"});
    const picker = h("div.picker", {},
      h("label", {for: search.id}, "To"), search, status, results);
    const recipient = h("div.recipient");
    const text = h("textarea", {id: newId("first"), rows: 3, placeholder: "Write your text…"});
    const counter = h("div.counter", {id: `${text.id}-count`});
    // Merge fields: what the chosen member gets (merged by the server when it sends).
    const mergePreview = h("p.merge-preview", {id: `${text.id}-merged`, hidden: true});
    text.setAttribute("aria-describedby", `${counter.id} ${mergePreview.id}`);
    const send = h("button.primary", {type: "submit"}, "Send");
    const form = h("form", {method: "dialog"},
      h("h2", {id: titleId}, "New conversation"),
      picker, recipient,
      h("label", {for: text.id}, "Message"), composeTools(text), text, counter, mergePreview,
      error.el,
      h("div.row", {},
        h("button", {type: "button", onclick: () => dialog.close()}, "Cancel"), send));
    const dialog = h("dialog.new-conversation", {"aria-labelledby": titleId}, form);

    function updateCounter() {
      const values = valuesFor(chosen, ctx && ctx.me ? ctx.me.church.name : "");
      const merged = render(text.value, values);
      counter.textContent = counterText(merged);
      counter.classList.toggle("over", segmentInfo(merged).segments > 1);
      const preview = previewLine(text.value, values, chosen ? memberName(chosen) : null);
      mergePreview.textContent = preview.text;
      mergePreview.hidden = !preview.text;
      mergePreview.classList.toggle("bad", preview.bad);
    }

    function showChosen() {
      picker.hidden = Boolean(chosen);
      if (!chosen) { fill(recipient); return; }
      fill(recipient, h("p.to", {},
        h("span.muted", {}, "To "), h("strong", {}, memberName(chosen)),
        memberName(chosen) !== formatPhone(chosen.phone) ? ` · ${formatPhone(chosen.phone)}` : "",
        member ? null : h("button.link", {type: "button", onclick: () => {
          chosen = null; idempotencyKey = null; showChosen(); search.focus();
        }}, "Change")));
      if (optedOut(chosen)) error.show(`${memberName(chosen)} has opted out of texts and can't be texted until they text START.`);
      send.disabled = optedOut(chosen);
      updateCounter();
    }

    let debounce = null;
    let seq = 0;
    search.addEventListener("input", () => {
      clearTimeout(debounce);
      debounce = setTimeout(find, 250);
    });

    async function find() {
      const q = search.value.trim();
      const mine = ++seq;  // typing fast: only the newest search fills the list
      if (!q) { fill(results); status.textContent = ""; return; }
      try {
        const {data} = await api.get("/members", {q, limit: RESULTS});
        if (mine !== seq) return;
        status.textContent = data.length ? `${data.length} matching` : "No members match.";
        fill(results, data.map((m) => h("li", {}, h("button", {
          type: "button", dataset: {id: m.id},
          onclick: () => { chosen = m; idempotencyKey = null; error.clear(); showChosen(); text.focus(); },
        }, h("span.name", {}, memberName(m)), " ", h("span.muted.small", {}, formatPhone(m.phone)),
        optedOut(m) ? h("span.badge.optout", {}, "Opted out") : null))));
      } catch (err) {
        error.show(err.message);
      }
    }

    text.addEventListener("input", () => { idempotencyKey = null; updateCounter(); });
    submitOnEnter(text, form);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.clear();
      const body = text.value.trim();
      if (!chosen) { error.show("Choose who to text first."); search.focus(); return; }
      if (!body) { error.show("Write the text first."); text.focus(); return; }
      send.disabled = true;
      idempotencyKey = idempotencyKey || (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`);
      try {
        const {data} = await api.post("/conversations", {member_id: chosen.id, body},
          {headers: {"Idempotency-Key": idempotencyKey}});
        result = data.conversation;
        announce(`Text to ${memberName(chosen)} queued.`);
        dialog.close();
      } catch (err) {
        error.show(err.message);
        send.disabled = false;
      }
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (result && ctx && ctx.navigate) ctx.navigate(`inbox/${result.id}`);
      resolve(result);
    });

    updateCounter();
    showChosen();
    document.body.append(dialog);
    dialog.showModal();
    (chosen ? text : search).focus();
  });
}
