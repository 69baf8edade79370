// Scheduled: upcoming one-off group sends (edit, cancel) and recurring texts in plain words
// ("Every Sunday at 8:00 AM, Central") with their next runs, pause/resume, edit, delete and
// past runs. Live: every change anyone makes arrives as a `schedule.changed` stream event
// and the affected list is read again by REST (no polling).

import {api} from "./api.js";
import {h, fill, field, newId, errorBox, busy, confirmDialog, announce} from "./dom.js";
import {broadcastWord, dateTime, plural} from "./format.js";
import {counterText} from "./segments.js";

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const RUN_WORDS = {
  sent: "Sent", skipped_late: "Skipped (the system was down over an hour)",
  skipped_superseded: "Skipped (a later run was sent instead)", failed: "Could not send",
};
const RELOAD_AFTER_EVENT_MS = 200;  // a burst of changes reads each list once

export function mount(main, ctx) {
  const canWrite = ctx.hasRole("admin");
  const state = {groups: [], church: null};
  const oneOffError = errorBox();
  const seriesError = errorBox();
  const upcoming = h("div.sched-list");
  const series = h("div.sched-list");
  const addSeries = canWrite ? h("button.primary", {type: "button", onclick: () => seriesDialog(null)}, "New recurring text") : null;
  fill(main, h("h1", {}, "Scheduled"),
    h("section.card", {"aria-labelledby": "sched-upcoming"},
      h("div.row", {}, h("h2.grow", {id: "sched-upcoming"}, "Upcoming group sends"),
        canWrite ? h("a.btn", {href: "#/send"}, "Schedule a send") : null),
      oneOffError.el, upcoming),
    h("section.card", {"aria-labelledby": "sched-recurring"},
      h("div.row", {}, h("h2.grow", {id: "sched-recurring"}, "Recurring texts"), addSeries),
      seriesError.el, series));

  const groupNames = (ids) => ids.map((id) => (state.groups.find((g) => g.id === id) || {}).name || "a deleted group").join(", ");

  /* ---------- one-off sends ---------- */

  async function loadUpcoming() {
    try {
      const rows = (await api.all("/messages", {status: "scheduled"}))
        .sort((a, b) => (a.scheduled_at < b.scheduled_at ? -1 : 1));
      fill(upcoming, rows.length ? rows.map(oneOffCard) : h("p.muted", {}, "No group sends are waiting. Schedule one from Send to a group."));
    } catch (err) { oneOffError.show(err.message); }
  }

  function oneOffCard(m) {
    const error = errorBox();
    return h("article.sched-item", {dataset: {id: m.id, kind: "broadcast"}},
      h("p.sched-when", {}, h("strong", {}, dateTime(m.scheduled_at)), " · ", h("span.badge.warn", {}, broadcastWord(m))),
      h("p.sched-body", {}, `“${m.body}”`),
      h("p.muted.small", {}, `To ${groupNames(m.group_ids) || "chosen members"} · about ${plural(m.recipient_count, "recipient")} · ${plural(m.segments, "segment")} each`),
      error.el,
      h("div.row", {},
        h("a", {href: `#/send/${m.id}`}, "Details", h("span.visually-hidden", {}, ` of the send on ${dateTime(m.scheduled_at)}`)),
        canWrite ? h("button", {type: "button", onclick: () => editOneOff(m)}, "Edit", h("span.visually-hidden", {}, ` the send on ${dateTime(m.scheduled_at)}`)) : null,
        canWrite ? h("button.danger", {type: "button", onclick: async () => {
          const sure = await confirmDialog({title: "Cancel this scheduled send?", lines: [`“${m.body}”`, `It was due ${dateTime(m.scheduled_at)}. Nobody gets it.`], confirmLabel: "Cancel the send", danger: true});
          if (!sure) return;
          const ok = await busy(null, error, async () => { await api.post(`/messages/${m.id}/cancel`, {}); return true; });
          if (ok) { announce("Scheduled send canceled."); loadUpcoming(); }
        }}, "Cancel send", h("span.visually-hidden", {}, ` on ${dateTime(m.scheduled_at)}`)) : null));
  }

  function editOneOff(m) {
    const text = h("textarea", {rows: 4, value: m.body});
    const counter = h("p.counter", {id: newId("count")});
    text.setAttribute("aria-describedby", counter.id);
    const update = () => { counter.textContent = counterText(text.value); };
    text.addEventListener("input", update);
    update();
    const at = h("input", {type: "datetime-local", value: localInput(m.scheduled_at)});
    const picks = groupPicker(m.group_ids);
    formDialog("Edit the scheduled send", [field("Message", text).wrap, counter, field("Date and time (your time zone)", at).wrap, picks.el], "Save changes", async () => {
      const when = at.value ? new Date(at.value) : null;
      if (!when || Number.isNaN(when.getTime()) || when.getTime() <= Date.now()) throw new Error("Pick a date and time in the future.");
      if (!picks.value().length && !m.member_ids.length) throw new Error("Choose at least one group.");
      await api.patch(`/messages/${m.id}`, {body: text.value.trim(), scheduled_at: when.toISOString(), group_ids: picks.value()});
      announce("Scheduled send saved.");
      loadUpcoming();
    });
  }

  /* ---------- recurring series ---------- */

  async function loadSeries() {
    try {
      const rows = await api.all("/recurring-messages");
      fill(series, rows.length ? rows.map(seriesCard) : h("p.muted", {}, "No recurring texts yet."));
    } catch (err) { seriesError.show(err.message); }
  }

  function seriesCard(r) {
    const error = errorBox();
    const runs = h("div");
    const history = h("details.sched-runs", {}, h("summary", {}, "Past runs"), runs);
    history.addEventListener("toggle", () => { if (history.open) loadRuns(r, runs); });
    const next = r.next_runs.length
      ? h("ul.sched-next", {"aria-label": "Next runs"}, r.next_runs.map((t) => h("li", {}, zoned(t, r.timezone))))
      : h("p.muted.small", {}, "Paused: nothing goes out until it is resumed.");
    return h("article.sched-item", {dataset: {id: r.id, kind: "recurring"}},
      h("p.sched-when", {}, h("strong.sched-words", {}, describeSchedule(r.schedule, r.timezone)), " ",
        r.active ? h("span.badge.ok", {}, "Active") : h("span.badge.closed", {}, "Paused")),
      h("p.sched-body", {}, `“${r.body}”`),
      h("p.muted.small", {}, `To ${groupNames(r.group_ids)}`,
        r.last_run_at ? h("span.sched-last", {}, ` · Last ran ${zoned(r.last_run_at, r.timezone)}`) : null),
      r.next_runs.length ? h("p.small", {}, h("strong", {}, "Next runs")) : null, next,
      error.el,
      canWrite ? h("div.row", {},
        h("button", {type: "button", onclick: async () => {
          const ok = await busy(null, error, async () => { await api.patch(`/recurring-messages/${r.id}`, {active: !r.active}); return true; });
          if (ok) { announce(r.active ? "Recurring text paused." : "Recurring text resumed."); loadSeries(); }
        }}, r.active ? "Pause" : "Resume", h("span.visually-hidden", {}, ` “${r.body.slice(0, 40)}”`)),
        h("button", {type: "button", onclick: () => seriesDialog(r)}, "Edit", h("span.visually-hidden", {}, ` “${r.body.slice(0, 40)}”`)),
        h("button.danger", {type: "button", onclick: async () => {
          const sure = await confirmDialog({title: "Delete this recurring text?", lines: [describeSchedule(r.schedule, r.timezone), `“${r.body}”`, "Texts already sent stay sent."], confirmLabel: "Delete", danger: true});
          if (!sure) return;
          const ok = await busy(null, error, async () => { await api.del(`/recurring-messages/${r.id}`); return true; });
          if (ok) { announce("Recurring text deleted."); loadSeries(); }
        }}, "Delete", h("span.visually-hidden", {}, ` “${r.body.slice(0, 40)}”`))) : null,
      history);
  }

  async function loadRuns(r, root) {
    try {
      const {data} = await api.get(`/recurring-messages/${r.id}/runs`, {limit: 20});
      fill(root, data.length ? h("ul.sched-history", {}, data.map((run) => h("li", {},
        `${zoned(run.occurrence_at, r.timezone)} · `,
        run.message_id ? h("a", {href: `#/send/${run.message_id}`}, RUN_WORDS[run.outcome] || run.outcome) : RUN_WORDS[run.outcome] || run.outcome)))
        : h("p.muted.small", {}, "It has not run yet."));
    } catch (err) { fill(root, h("p.error-text", {}, err.message)); }
  }

  function seriesDialog(r) {
    const parsed = r ? parseSchedule(r.schedule) : {kind: "weekly", day: 0, hour: 8, minute: 0, date: 1};
    const text = h("textarea", {rows: 3, value: r ? r.body : ""});
    const counter = h("p.counter", {id: newId("count")});
    text.setAttribute("aria-describedby", counter.id);
    const update = () => { counter.textContent = counterText(text.value); };
    text.addEventListener("input", update);
    update();
    const kind = h("select", {}, [["weekly", "Every week"], ["daily", "Every day"], ["monthly", "Every month"], ["custom", "Custom (cron)"]]
      .map(([v, label]) => h("option", {value: v, selected: parsed.kind === v}, label)));
    const day = h("select", {}, DAYS.map((d, i) => h("option", {value: String(i), selected: parsed.day === i}, d)));
    const date = h("input", {type: "number", min: 1, max: 28, value: String(parsed.date || 1)});
    const time = h("input", {type: "time", value: `${pad(parsed.hour)}:${pad(parsed.minute)}`});
    const cron = h("input", {autocomplete: "off", value: r ? r.schedule : "0 8 * * 0"});
    const zone = h("input", {autocomplete: "off", value: r ? r.timezone : (state.church && state.church.timezone) || Intl.DateTimeFormat().resolvedOptions().timeZone});
    const dayWrap = field("Day of the week", day).wrap;
    const dateWrap = field("Day of the month", date, "1 to 28, so it happens every month").wrap;
    const timeWrap = field("Time", time).wrap;
    const cronWrap = field("Cron schedule", cron, "minute hour day-of-month month day-of-week, e.g. 0 8 * * 0").wrap;
    const show = () => {
      dayWrap.hidden = kind.value !== "weekly";
      dateWrap.hidden = kind.value !== "monthly";
      timeWrap.hidden = kind.value === "custom";
      cronWrap.hidden = kind.value !== "custom";
    };
    kind.addEventListener("change", show);
    show();
    const picks = groupPicker(r ? r.group_ids : []);
    formDialog(r ? "Edit the recurring text" : "New recurring text",
      [field("Message", text).wrap, counter, field("Repeats", kind).wrap, dayWrap, dateWrap, timeWrap, cronWrap,
        field("Time zone", zone, "An IANA name such as America/Chicago").wrap, picks.el],
      r ? "Save changes" : "Create", async () => {
        if (!picks.value().length) throw new Error("Choose at least one group.");
        const [hh, mm] = (time.value || "08:00").split(":").map(Number);
        const schedule = kind.value === "custom" ? cron.value.trim()
          : kind.value === "daily" ? `${mm} ${hh} * * *`
            : kind.value === "monthly" ? `${mm} ${hh} ${Number(date.value) || 1} * *` : `${mm} ${hh} * * ${day.value}`;
        const payload = {body: text.value.trim(), schedule, timezone: zone.value.trim(), group_ids: picks.value()};
        if (r) await api.patch(`/recurring-messages/${r.id}`, payload);
        else await api.post("/recurring-messages", payload);
        announce(r ? "Recurring text saved." : "Recurring text created.");
        loadSeries();
      });
  }

  /* ---------- shared ---------- */

  function groupPicker(selected) {
    const chosen = new Set(selected);
    const list = h("ul.group-pick", {"aria-label": "Groups"}, state.groups.map((g) => h("li", {},
      h("label", {}, h("input", {type: "checkbox", value: g.id, checked: chosen.has(g.id),
        onchange: (e) => { if (e.target.checked) chosen.add(g.id); else chosen.delete(g.id); }}),
      `${g.name} `, h("span.muted", {}, `(${plural(g.member_count, "member")})`)))));
    return {el: h("fieldset.plain", {}, h("legend", {}, "Groups"), list), value: () => [...chosen]};
  }

  function formDialog(title, controls, submitLabel, action) {
    const error = errorBox();
    const titleId = newId("dlg");
    const save = h("button.primary", {type: "submit"}, submitLabel);
    const form = h("form", {}, h("h2", {id: titleId}, title), controls, error.el,
      h("div.row", {}, h("button", {type: "button", onclick: () => dialog.close()}, "Cancel"), save));
    const dialog = h("dialog.wide", {"aria-labelledby": titleId}, form);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const ok = await busy(save, error, async () => { await action(); return true; });
      if (ok) dialog.close();
    });
    dialog.addEventListener("close", () => dialog.remove());
    document.body.append(dialog);
    dialog.showModal();
  }

  const timers = {};
  function soon(name, fn) {
    clearTimeout(timers[name]);
    timers[name] = setTimeout(fn, RELOAD_AFTER_EVENT_MS);
  }

  function onEvent(event) {
    if (event.type !== "schedule.changed") return;
    if (event.data.kind === "recurring") soon("series", loadSeries);
    else soon("upcoming", loadUpcoming);
  }

  async function start() {
    try {
      [state.groups, state.church] = await Promise.all([api.all("/groups"), api.get("/church").then((r) => r.data)]);
    } catch (err) { oneOffError.show(err.message); }
    await Promise.all([loadUpcoming(), loadSeries()]);
  }
  start();
  return {
    onEvent,
    refresh: () => Promise.all([loadUpcoming(), loadSeries()]),
    unmount() { for (const t of Object.values(timers)) clearTimeout(t); },
  };
}

/* ---------- plain words for a schedule ---------- */

function pad(n) { return String(n).padStart(2, "0"); }

function clock(hour, minute) {
  return `${((hour + 11) % 12) + 1}:${pad(minute)} ${hour < 12 ? "AM" : "PM"}`;
}

function ordinal(n) {
  const s = n % 100 >= 11 && n % 100 <= 13 ? "th" : ({1: "st", 2: "nd", 3: "rd"}[n % 10] || "th");
  return `${n}${s}`;
}

/** "America/Chicago" → "Central"; the zone's generic name without " Time". */
export function zoneWords(tz) {
  try {
    const part = new Intl.DateTimeFormat("en-US", {timeZone: tz, timeZoneName: "longGeneric"})
      .formatToParts(new Date()).find((p) => p.type === "timeZoneName");
    return part ? part.value.replace(/ Time$/, "") : tz;
  } catch (_err) { return tz; }
}

/** The simple cron shapes the editor writes: weekly, daily or monthly at one time. */
export function parseSchedule(cron) {
  const [m, hr, dom, mon, dow] = String(cron).trim().split(/\s+/);
  const minute = Number(m);
  const hour = Number(hr);
  const plain = /^\d+$/.test(m) && /^\d+$/.test(hr) && mon === "*";
  if (plain && dom === "*" && dow === "*") return {kind: "daily", hour, minute};
  if (plain && dom === "*" && /^[0-7]$/.test(dow)) return {kind: "weekly", day: Number(dow) % 7, hour, minute};
  if (plain && /^\d+$/.test(dom) && dow === "*") return {kind: "monthly", date: Number(dom), hour, minute};
  return {kind: "custom", hour: 8, minute: 0, day: 0, date: 1, days: plain && dom === "*" ? dow : null};
}

function dayList(spec) {
  if (spec === "1-5") return "weekday";
  if (spec === "0,6" || spec === "6,0") return "Saturday and Sunday";
  const days = spec.split(",").map((d) => (/^[0-7]$/.test(d) ? DAYS[Number(d) % 7] : null));
  if (days.some((d) => !d)) return null;
  return days.length > 1 ? `${days.slice(0, -1).join(", ")} and ${days[days.length - 1]}` : days[0];
}

/** "0 8 * * 0" in America/Chicago → "Every Sunday at 8:00 AM, Central". */
export function describeSchedule(cron, tz) {
  const p = parseSchedule(cron);
  const zone = zoneWords(tz);
  const at = `at ${clock(p.hour, p.minute)}, ${zone}`;
  if (p.kind === "daily") return `Every day ${at}`;
  if (p.kind === "weekly") return `Every ${DAYS[p.day]} ${at}`;
  if (p.kind === "monthly") return `Every month on the ${ordinal(p.date)} ${at}`;
  const [m, hr] = String(cron).trim().split(/\s+/);
  const days = p.days ? dayList(p.days) : null;
  if (days) return `Every ${days} at ${clock(Number(hr), Number(m))}, ${zone}`;
  return `On a custom schedule (${cron}), ${zone}`;
}

/** A time as the series' own zone reads it: "Sun, Dec 6, 8:00 AM". */
function zoned(iso, tz) {
  try {
    return new Date(iso).toLocaleString("en-US", {timeZone: tz, weekday: "short", month: "short", day: "numeric", hour: "numeric", minute: "2-digit"});
  } catch (_err) { return dateTime(iso); }
}

/** An ISO time as a datetime-local value in the browser's zone. */
function localInput(iso) {
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
