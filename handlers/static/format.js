// Formatting for people: names, phone numbers, times, money, statuses.

/** "+15551234567" → "(555) 123-4567"; other countries stay in E.164. */
export function formatPhone(phone) {
  const match = /^\+1(\d{3})(\d{3})(\d{4})$/.exec(phone || "");
  return match ? `(${match[1]}) ${match[2]}-${match[3]}` : (phone || "");
}

export function memberName(member) {
  if (!member) return "Unknown";
  const name = [member.first_name, member.last_name].filter(Boolean).join(" ").trim();
  return name || formatPhone(member.phone) || "Unknown";
}

export function initials(name) {
  const parts = String(name || "").trim().split(/\s+/).filter(Boolean);
  return parts.slice(0, 2).map((p) => p[0].toUpperCase()).join("") || "?";
}

const MINUTE = 60 * 1000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** "just now", "2 min ago", "3 h ago", "Yesterday", "Mar 4". */
export function relativeTime(iso, now = Date.now()) {
  if (!iso) return "";
  const then = new Date(iso).getTime();
  const diff = now - then;
  if (diff < MINUTE) return "just now";
  if (diff < HOUR) return `${Math.floor(diff / MINUTE)} min ago`;
  if (diff < DAY && new Date(then).getDate() === new Date(now).getDate()) {
    return `${Math.floor(diff / HOUR)} h ago`;
  }
  if (diff < 2 * DAY && dayKey(then) === dayKey(now - DAY)) return "Yesterday";
  return new Date(then).toLocaleDateString(undefined, {month: "short", day: "numeric"});
}

export function dayKey(value) {
  const d = new Date(value);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

/** A day separator: "Today", "Yesterday", or "Sunday, March 3". */
export function dayLabel(iso, now = Date.now()) {
  const key = dayKey(iso);
  if (key === dayKey(now)) return "Today";
  if (key === dayKey(now - DAY)) return "Yesterday";
  return new Date(iso).toLocaleDateString(undefined, {weekday: "long", month: "long", day: "numeric"});
}

export function timeOfDay(iso) {
  return new Date(iso).toLocaleTimeString(undefined, {hour: "numeric", minute: "2-digit"});
}

export function dateTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(undefined, {dateStyle: "medium", timeStyle: "short"});
}

export function money(cents) {
  return `$${(Math.round(cents) / 100).toFixed(2)}`;
}

export function plural(n, word, many = `${word}s`) {
  return `${Number(n).toLocaleString()} ${n === 1 ? word : many}`;
}

const STATUS_WORDS = {
  received: "Received", queued: "Queued", sending: "Sending", sent: "Sent",
  delivered: "Delivered", failed: "Failed", undeliverable: "Undeliverable", canceled: "Canceled",
  scheduled: "Scheduled", completed: "Completed",
};

export function statusWord(status) {
  return STATUS_WORDS[status] || (status ? status.charAt(0).toUpperCase() + status.slice(1) : "");
}

// A completed broadcast's outcome (API: Message.outcome) says what happened.
const OUTCOME_WORDS = {
  completed: "Completed", completed_with_failures: "Completed with failures", failed: "Failed",
};

/** A broadcast's state in words: its outcome once completed, else its status. */
export function broadcastWord(message) {
  return OUTCOME_WORDS[message.outcome] || statusWord(message.status);
}

// Why a text failed (API: error_reason, the same words for every carrier) → a sentence.
// The carrier's own code and words stay in the error text, shown as a tooltip.
const FAILURE_SENTENCES = {
  opted_out: "They have opted out of texts from this number.",
  not_mobile: "This number cannot get texts (it may be a landline).",
  invalid_number: "This phone number is not valid.",
  unreachable: "Their phone could not be reached.",
  blocked: "Their mobile carrier blocked the text.",
  rate_limited: "Too many texts were sent at once.",
  carrier_unavailable: "The texting service was unavailable.",
  carrier_refused: "The texting service refused the text.",
  no_answer: "The texting service did not answer in time.",
  account_problem: "The church's texting account needs attention. Contact support.",
  unknown: "The text could not be delivered.",
};

/** A plain sentence for a failure: from its reason, else our own error text as it is. */
export function failureText(reason, error) {
  return FAILURE_SENTENCES[reason] || error || "The text could not be delivered.";
}

/** Compare two stream event ids (opaque but increasing; numeric strings in practice). */
export function compareIds(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return -1;
  if (b === null || b === undefined) return 1;
  const numeric = /^\d+$/;
  if (numeric.test(a) && numeric.test(b)) {
    return a.length !== b.length ? a.length - b.length : (a < b ? -1 : 1);
  }
  return a < b ? -1 : 1;
}
