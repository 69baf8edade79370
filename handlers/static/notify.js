// Noticing new texts while looking elsewhere: optional desktop notifications (the
// Notification API) and an optional short sound, for inbound texts that arrive while this
// tab is hidden. Both are off until the user turns them on under "Alerts" in the top bar;
// the browser's permission is asked only then (a click, as browsers require). The choice
// is kept per browser in localStorage. No sound file: a short tone from Web Audio.

import {h, newId, announce} from "./dom.js";
import {memberName} from "./format.js";

const KEYS = {desktop: "ywm.alerts.desktop", sound: "ywm.alerts.sound"};
const PREVIEW_CHARS = 120;
export const counts = {notifications: 0, sounds: 0};  // read by tests

function stored(key) {
  try { return localStorage.getItem(KEYS[key]) === "on"; } catch (_err) { return false; }
}

function store(key, on) {
  try { localStorage.setItem(KEYS[key], on ? "on" : "off"); } catch (_err) { /* private mode: this tab only */ }
}

const supported = () => typeof window.Notification === "function";
let audio = null;

function beep() {
  try {
    if (!audio) audio = new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.15, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.35);
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.35);
    counts.sounds += 1;
  } catch (_err) { /* no audio device: the notification (if on) still shows */ }
}

/** A new stream event: alert for an inbound text while the tab is hidden. */
export function onEvent(event) {
  if (event.type !== "message.received" || document.visibilityState !== "hidden") return;
  const data = event.data || {};
  const message = data.message || data;
  if (message.direction !== "inbound") return;
  const conversation = data.conversation || {};
  const who = memberName(conversation.member);
  if (stored("desktop") && supported() && Notification.permission === "granted") {
    const body = String(message.body || "").slice(0, PREVIEW_CHARS);
    try {
      const note = new Notification(`New text from ${who}`, {body, tag: conversation.id || message.conversation_id});
      note.onclick = () => {
        window.focus();
        if (conversation.id) location.hash = `#/inbox/${encodeURIComponent(conversation.id)}`;
        note.close();
      };
      counts.notifications += 1;
    } catch (_err) { /* some browsers allow notifications only from a service worker */ }
  }
  if (stored("sound")) beep();
}

/** The "Alerts" button of the top bar and its small dialog of two switches. */
export function alertsButton() {
  const button = h("button.alerts-button", {type: "button", "aria-haspopup": "dialog", "aria-label": "Alerts", title: "Alerts for new texts"},
    h("span.alerts-label", {"aria-hidden": "true"}, "Alerts"));
  button.addEventListener("click", openDialog);
  return button;
}

function openDialog() {
  const titleId = newId("dlg");
  const desktop = h("input", {type: "checkbox", checked: stored("desktop") && supported() && Notification.permission === "granted",
    disabled: !supported()});
  const sound = h("input", {type: "checkbox", checked: stored("sound")});
  const status = h("p.field-hint", {role: "status"});
  const dialog = h("dialog.alerts-dialog", {"aria-labelledby": titleId},
    h("h2", {id: titleId}, "Alerts for new texts"),
    h("p.muted", {}, "Only while this tab is in the background. Saved for this browser."),
    h("label.inline", {}, desktop, "Show a desktop notification"),
    h("label.inline", {}, sound, "Play a sound"),
    status,
    h("div.row", {}, h("button.primary", {type: "button", onclick: () => dialog.close()}, "Done")));
  if (!supported()) status.textContent = "This browser cannot show desktop notifications.";
  else if (Notification.permission === "denied") status.textContent = "Notifications are blocked for this site: allow them in the browser's site settings.";

  desktop.addEventListener("change", async () => {
    if (!desktop.checked) { store("desktop", false); status.textContent = "Desktop notifications are off."; return; }
    // Asked here, on the user's click: browsers ignore requests made without one.
    let permission = Notification.permission;
    if (permission === "default") permission = await Notification.requestPermission();
    const on = permission === "granted";
    desktop.checked = on;
    store("desktop", on);
    status.textContent = on ? "Desktop notifications are on." :
      "The browser did not allow notifications: allow them in its site settings, then try again.";
    announce(status.textContent);
  });
  sound.addEventListener("change", () => {
    store("sound", sound.checked);
    if (sound.checked) {  // starting audio also needs the click
      try { if (!audio) audio = new AudioContext(); audio.resume(); } catch (_err) { /* no audio */ }
    }
    status.textContent = sound.checked ? "A sound plays for new texts." : "Sounds are off.";
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}
