// The live stream client (API.md §7). It owns the WebSocket, reconnecting with backoff,
// and `last_event_id`: every event is handed on once, in order, and after a reconnect the
// server replays what was missed. It reports one of these states:
//   "connecting" → "live" · "reconnecting" · "caught_up" (with a count of new texts)
//   · "reload" (the server said resync_required: reload by REST).

import {api} from "./api.js";
import {compareIds} from "./format.js";

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
const PING_EVERY_MS = 25000;
const PONG_WITHIN_MS = 10000;
const CAUGHT_UP_SHOWN_MS = 8000;
const REPLAY_QUIET_MS = 700;  // no replayed frame for this long: the replay is over

export class Stream {
  /**
   * @param {{onEvent: (event) => void, onState: (state, info) => void, onResync: () => void}} hooks
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.lastEventId = null;
    this.state = "connecting";
    this.socket = null;
    this.attempt = 0;
    this.stopped = true;
    this.timers = {};
    this.replay = null;  // {texts} while the server replays what a reconnect missed
    this.onOnline = () => this.reconnectNow();
    this.onVisible = () => { if (document.visibilityState === "visible") this.reconnectNow(); };
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener("online", this.onOnline);
    document.addEventListener("visibilitychange", this.onVisible);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    document.removeEventListener("visibilitychange", this.onVisible);
    for (const name of Object.keys(this.timers)) this.clearTimer(name);
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close(1000, "signed out");
    }
  }

  setState(state, info = {}) {
    this.state = state;
    this.hooks.onState(state, info);
  }

  clearTimer(name) {
    clearTimeout(this.timers[name]);
    delete this.timers[name];
  }

  /** Reconnect at once if we are waiting to (the network came back, the tab is visible). */
  reconnectNow() {
    if (this.stopped || this.socket) return;
    this.clearTimer("retry");
    this.connect();
  }

  async connect() {
    if (this.stopped || this.socket) return;
    let ticket;
    try {
      ticket = (await api.post("/stream/ticket", {})).data.ticket;
    } catch (err) {
      if (err.status === 401) return;  // the app shows Sign in; nothing to resume
      this.scheduleRetry();
      return;
    }
    if (this.stopped || this.socket) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const params = new URLSearchParams({ticket});
    if (this.lastEventId !== null) params.set("last_event_id", this.lastEventId);
    const socket = new WebSocket(`${scheme}://${location.host}/api/v1/stream?${params}`);
    this.socket = socket;
    socket.addEventListener("message", (msg) => this.receive(socket, msg));
    socket.addEventListener("close", () => this.closed(socket));
  }

  receive(socket, msg) {
    if (socket !== this.socket) return;
    let frame;
    try { frame = JSON.parse(msg.data); } catch (_notJson) { return; }
    this.clearTimer("pong");
    this.armPing();
    if (frame.type === "hello") return this.hello(frame);
    if (frame.type === "pong") return undefined;
    if (frame.type === "resync_required") return this.resync();
    if (frame.type === "error") return undefined;  // the server closes when it matters
    if (frame.id === undefined || frame.id === null) return undefined;
    const id = String(frame.id);
    if (this.lastEventId !== null && compareIds(id, this.lastEventId) <= 0) return undefined;
    this.lastEventId = id;
    if (this.replay) this.replayed(frame);
    this.hooks.onEvent(frame);
    return undefined;
  }

  hello(frame) {
    this.attempt = 0;
    // hello names where this connection starts: the newest event on a fresh connection,
    // or the id we asked to resume after (the replay follows, then live events).
    this.helloId = frame.last_event_id === undefined || frame.last_event_id === null
      ? null : String(frame.last_event_id);
    if (this.lastEventId === null) {
      if (this.helloId !== null) this.lastEventId = this.helloId;
      this.setState("live");
      return;
    }
    // Resuming: the server replays what we missed straight away, so the replay is over
    // when frames stop arriving in a burst.
    this.replay = {texts: 0};
    this.armReplayQuiet();
  }

  replayed(frame) {
    if (frame.type === "message.received") {
      const data = frame.data || {};
      const message = data.message || data;
      if (message.direction !== "outbound") this.replay.texts += 1;
    }
    this.armReplayQuiet();
  }

  armReplayQuiet() {
    this.clearTimer("replay");
    this.timers.replay = setTimeout(() => this.replay && this.finishReplay(this.replay), REPLAY_QUIET_MS);
  }

  finishReplay(replay) {
    this.clearTimer("replay");
    this.replay = null;
    this.setState("caught_up", {texts: replay.texts});
    this.clearTimer("caught");
    this.timers.caught = setTimeout(() => {
      if (this.state === "caught_up") this.setState("live");
    }, CAUGHT_UP_SHOWN_MS);
  }

  resync() {
    this.replay = null;
    if (this.helloId !== null && this.helloId !== undefined) this.lastEventId = this.helloId;
    this.clearTimer("replay");
    this.setState("reload");
    this.hooks.onResync();
  }

  /** After a REST reload following resync_required, the stream is simply live. */
  reloaded() {
    if (this.state === "reload") this.setState("live");
  }

  armPing() {
    this.clearTimer("ping");
    this.timers.ping = setTimeout(() => {
      const socket = this.socket;
      if (!socket || socket.readyState !== WebSocket.OPEN) return;
      socket.send(JSON.stringify({type: "ping"}));
      // No answer at all: the connection is dead even if the browser has not noticed.
      this.timers.pong = setTimeout(() => socket.close(4000, "no pong"), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  closed(socket) {
    if (socket !== this.socket) return;
    this.socket = null;
    this.replay = null;
    for (const name of ["ping", "pong", "replay", "caught"]) this.clearTimer(name);
    if (this.stopped) return;
    this.scheduleRetry();
  }

  scheduleRetry() {
    if (this.stopped) return;
    if (this.state !== "reload") this.setState("reconnecting");
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    const delay = base / 2 + Math.random() * base / 2;  // jitter: a church's tabs spread out
    this.clearTimer("retry");
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }
}
