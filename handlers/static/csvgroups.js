// CSV import helper: which group names a member CSV names that the church does not have
// yet (the import creates them, so the app asks first). A small RFC 4180 reader: quoted
// cells may hold commas, doubled quotes and line breaks. Group names are `;`-separated and
// matched case-insensitively, as the server does (server/services/member_import.py).

/** Split CSV text into rows of cells. */
export function parseCsv(text) {
  const rows = [];
  let row = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { cell += '"'; i += 1; } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") { row.push(cell); cell = ""; } else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[i + 1] === "\n") i += 1;
      row.push(cell); rows.push(row); row = []; cell = "";
    } else cell += ch;
  }
  if (cell !== "" || row.length) { row.push(cell); rows.push(row); }
  return rows;
}

/** The group names in `text`'s groups column that no existing group has, first spelling kept. */
export function newGroupNames(text, existing) {
  const rows = parseCsv(text.replace(/^\uFEFF/, ""));
  if (!rows.length) return [];
  const column = rows[0].findIndex((name) => name.trim().toLowerCase() === "groups");
  if (column < 0) return [];
  const known = new Set(existing.map((g) => g.name.trim().toLowerCase()));
  const found = new Map();
  for (const row of rows.slice(1)) {
    for (const name of (row[column] || "").split(";").map((g) => g.trim()).filter(Boolean)) {
      const key = name.toLowerCase();
      if (!known.has(key) && !found.has(key)) found.set(key, name);
    }
  }
  return [...found.values()];
}
