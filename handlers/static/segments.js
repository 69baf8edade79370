// SMS segment counting for the compose boxes: a mirror of server/sms/segments.py
// (CARRIERS.md §5). GSM-7: 160 septets in one segment, 153 per part, extension characters
// cost two. Any other character makes the whole text UCS-2: 70 UTF-16 units, 67 per part.
// Parts are filled without splitting an escape pair, a surrogate pair or a grapheme.

export const GSM7 = "GSM-7";
export const UCS2 = "UCS-2";
const GSM_BASIC = new Set(
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
  "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà");
const GSM_EXTENSION = new Set("^{}\\[]~|€\f");
export const LIMITS = {[GSM7]: {single: 160, part: 153}, [UCS2]: {single: 70, part: 67}};
const ZWJ = "\u200d";
const MARK = /\p{M}/u;

export function isGsm7(text) {
  for (const ch of text) if (!GSM_BASIC.has(ch) && !GSM_EXTENSION.has(ch)) return false;
  return true;
}

function extendsCluster(ch) {
  const code = ch.codePointAt(0);
  return MARK.test(ch) || (code >= 0xfe00 && code <= 0xfe0f) ||
    (code >= 0x1f3fb && code <= 0x1f3ff) || (code >= 0xe0020 && code <= 0xe007f);
}

function isRegional(ch) {
  const code = ch.codePointAt(0);
  return code >= 0x1f1e6 && code <= 0x1f1ff;
}

/** The same approximation of grapheme clusters as the server's. */
export function graphemes(text) {
  const out = [];
  let cluster = "";
  for (const ch of text) {  // iterates code points, as Python's str does
    if (!cluster) cluster = ch;
    else if (extendsCluster(ch) || cluster.endsWith(ZWJ) || ch === ZWJ) cluster += ch;
    else if (isRegional(ch) && [...cluster].length === 1 && isRegional(cluster)) cluster += ch;
    else { out.push(cluster); cluster = ch; }
  }
  if (cluster) out.push(cluster);
  return out;
}

function pack(sizes, single, part) {
  const total = sizes.reduce((a, b) => a + b, 0);
  if (total <= single) return 1;
  let parts = 1;
  let used = 0;
  for (const size of sizes) {
    if (used + size > part && used > 0) { parts += 1; used = 0; }
    used += size;
  }
  return parts;
}

/** {encoding, segments, units, limit}: units are septets (GSM-7) or UTF-16 units (UCS-2). */
export function segmentInfo(text) {
  if (!text) return {encoding: GSM7, segments: 0, units: 0, limit: 160};
  if (isGsm7(text)) {
    const sizes = [...text].map((ch) => (GSM_EXTENSION.has(ch) ? 2 : 1));
    const segments = pack(sizes, 160, 153);
    const units = sizes.reduce((a, b) => a + b, 0);
    return {encoding: GSM7, segments, units, limit: segments <= 1 ? 160 : segments * 153};
  }
  const sizes = graphemes(text).map((g) => g.length);  // String length counts UTF-16 units
  const segments = pack(sizes, 70, 67);
  const units = sizes.reduce((a, b) => a + b, 0);
  return {encoding: UCS2, segments, units, limit: segments <= 1 ? 70 : segments * 67};
}

/** The counter line under a compose box: "143 / 160 · 1 segment" or "UCS-2 · 70 per segment · …". */
export function counterText(text) {
  const info = segmentInfo(text);
  const n = Math.max(info.segments, 1);
  const segs = `${n} segment${n === 1 ? "" : "s"}`;
  if (info.encoding === UCS2) {
    const per = info.segments > 1 ? 67 : 70;
    return `UCS-2 · ${per} per segment · ${info.units} / ${info.limit} · ${segs}`;
  }
  return `${info.units} / ${info.limit} · ${segs}`;
}
