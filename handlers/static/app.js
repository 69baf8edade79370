// The app shell: who is signed in, the top bar (church, connection state, user, sign out),
// the navigation, and a hash router that mounts one screen module at a time. Stream events
// go to the mounted screen; the unread total drives the tab title.

import {api, onUnauthorized} from "./api.js";
import {Stream} from "./stream.js";
import {h, fill, announce} from "./dom.js";
import {memberName, plural} from "./format.js";
import * as signin from "./signin.js";
import * as inbox from "./inbox.js";
import * as broadcast from "./broadcast.js";
import * as members from "./members.js";
import * as settings from "./settings.js";
import * as templates from "./templates.js";
import * as notify from "./notify.js";
import * as scheduled from "./scheduled.js";
import * as numbers from "./numbers.js";

const ROLE_RANK = {staff: 1, admin: 2, owner: 3};
const SCREENS = [
  {path: "inbox", label: "Inbox", module: inbox, role: "staff"},
  {path: "send", label: "Send to a group", module: broadcast, role: "admin"},
  {path: "scheduled", label: "Scheduled", module: scheduled, role: "staff"},
  {path: "members", label: "Members & groups", module: members, role: "staff", also: ["groups"]},
  {path: "templates", label: "Saved replies", module: templates, role: "staff"},
  {path: "numbers", label: "Numbers", module: numbers, role: "staff"},
  {path: "settings", label: "Settings", module: settings, role: "owner"},
];
const STATE_TEXT = {
  connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", reload: "Reload needed",
};

const root = document.getElementById("app");
const app = {me: null, stream: null, screen: null, screenPath: null, unread: new Map(),
  unreadWhileLoading: null, conn: null};

export function hasRole(role) {
  return Boolean(app.me) && ROLE_RANK[app.me.user.role] >= ROLE_RANK[role];
}

function route() {
  const hash = location.hash.startsWith("#/") ? location.hash.slice(2) : "inbox";
  const [path, ...rest] = hash.split("/").map(decodeURIComponent);
  return {path: path || "inbox", params: rest.filter(Boolean)};
}

export function navigate(path) {
  location.hash = `#/${path}`;
}

/* ---------- unread total → tab title ---------- */

function setUnread(conversationId, count) {
  if (app.unreadWhileLoading) app.unreadWhileLoading.set(conversationId, count);
  if (count > 0) app.unread.set(conversationId, count);
  else app.unread.delete(conversationId);
  updateTitle();
}

function updateTitle() {
  let total = 0;
  for (const n of app.unread.values()) total += n;
  const screen = SCREENS.find((s) => s.path === app.screenPath || (s.also || []).includes(app.screenPath));
  const name = screen ? screen.label : "YWMessaging";
  document.title = `${total > 0 ? `(${total}) ` : ""}${name} · YWMessaging`;
}

async function loadUnread() {
  // Live counts that arrive while the list loads are newer than it: kept over it.
  const live = app.unreadWhileLoading = new Map();
  try {
    const rows = await api.all("/conversations", {unread: "true"}, 1000);
    app.unread.clear();
    for (const row of rows) if (row.unread_count > 0) app.unread.set(row.id, row.unread_count);
    for (const [id, count] of live) {
      if (count > 0) app.unread.set(id, count);
      else app.unread.delete(id);
    }
    updateTitle();
  } catch (_err) { /* the title is a convenience; the inbox shows its own errors */
  } finally {
    if (app.unreadWhileLoading === live) app.unreadWhileLoading = null;
  }
}

function trackUnread(event) {
  const data = event.data || {};
  if (event.type === "conversation.updated" && data.id) setUnread(data.id, data.unread_count || 0);
  if (event.type === "message.received" && data.conversation) {
    setUnread(data.conversation.id, data.conversation.unread_count || 0);
  }
}

/* ---------- connection state ---------- */

function showState(state, info = {}) {
  if (!app.conn) return;
  if (state === "caught_up" || (state === "live" && !app.wasLive)) {
    // The screen loaded by REST while the socket was opening, or a resume has replayed
    // what the gap missed: read the message states again (a status the replay could not
    // carry must not stay "Queued" until a reload).
    app.wasLive = true;
    if (app.screen && app.screen.refresh) app.screen.refresh();
    loadUnread();
  }
  const text = state === "caught_up"
    ? `Caught up · ${plural(info.texts || 0, "new text")}` : STATE_TEXT[state] || state;
  app.conn.className = `conn ${state}`;
  app.conn.dataset.state = state;
  fill(app.conn.label, text);
  app.conn.reload.hidden = state !== "reload";
}

async function reloadData() {
  await loadUnread();
  if (app.screen && app.screen.refresh) await app.screen.refresh();
  app.stream.reloaded();
}

/* ---------- shell ---------- */

function renderShell() {
  const label = h("span", {}, "Connecting…");
  const reload = h("button.link", {type: "button", hidden: true, onclick: () => reloadData()}, "Reload");
  app.conn = h("span.conn.connecting", {role: "status", "aria-live": "polite", "data-state": "connecting"}, label);
  app.conn.label = label;
  app.conn.reload = reload;
  const nav = h("nav.nav", {"aria-label": "Main"},
    SCREENS.filter((s) => hasRole(s.role)).map((s) => h("a", {href: `#/${s.path}`, dataset: {path: s.path}}, s.label)));
  const user = app.me.user;
  fill(root,
    h("header.topbar",
      h("span.church", {}, app.me.church.name),
      h("span.row", {}, app.conn, reload),
      h("div.user",
        h("span.who", {title: user.email}, `${user.name} · ${user.role}`),
        h("button", {type: "button", onclick: signOut}, "Sign out"),
        notify.alertsButton())),
    nav,
    h("main", {id: "main", tabindex: "-1"}));
}

function mountScreen() {
  const {path, params} = route();
  const screen = SCREENS.find((s) => s.path === path || (s.also || []).includes(path));
  const allowed = screen && hasRole(screen.role);
  const target = allowed ? screen : SCREENS[0];
  const main = document.getElementById("main");
  for (const link of document.querySelectorAll(".nav a")) {
    const current = link.dataset.path === target.path;
    if (current) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  const samePath = app.screenPath === (allowed ? path : "inbox");
  if (samePath && app.screen && app.screen.update) {
    app.screen.update(params);
    return;
  }
  if (app.screen && app.screen.unmount) app.screen.unmount();
  app.screenPath = allowed ? path : "inbox";
  main.replaceChildren();
  main.className = target.path === "inbox" ? "inbox-main" : "";
  app.screen = target.module.mount(main, {
    me: app.me, params, path: app.screenPath, navigate, hasRole, setUnread, announce, memberName,
  });
  updateTitle();
}

function onEvent(event) {
  trackUnread(event);
  notify.onEvent(event);  // desktop notification / sound, if turned on, while hidden
  if (app.screen && app.screen.onEvent) app.screen.onEvent(event);
}

async function signOut() {
  try { await api.post("/auth/logout", {}); } catch (_err) { /* signing out locally anyway */ }
  showSignIn();
}

function showSignIn() {
  if (app.stream) app.stream.stop();
  if (app.screen && app.screen.unmount) app.screen.unmount();
  app.me = null; app.stream = null; app.screen = null; app.screenPath = null; app.conn = null;
  app.unread.clear();
  document.title = "Sign in · YWMessaging";
  signin.mount(root, {onSignedIn: start});
}

async function start() {
  let me;
  try {
    me = (await api.get("/auth/me")).data;
  } catch (err) {
    if (err.status === 401) return showSignIn();
    fill(root, h("p.error-text", {role: "alert"}, err.message));
    return undefined;
  }
  app.me = me;
  app.wasLive = false;
  renderShell();
  app.stream = new Stream({onEvent, onState: showState, onResync: () => {}});
  app.stream.start();
  mountScreen();
  loadUnread();
  return undefined;
}

onUnauthorized(() => { if (app.me) showSignIn(); });
window.addEventListener("hashchange", () => { if (app.me && location.hash.startsWith("#/")) mountScreen(); });
document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  const main = document.getElementById("main");
  if (main) main.focus();
});
window.ywm = app;  // for tests and the curious: read-only use
start();
