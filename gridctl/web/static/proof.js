// Check a household's inclusion proof (`gridctl ledger proof`) in the browser: the same
// checks as gridctl.settlement.statement.check_proof, hashed with WebCrypto SHA-256.
//
// RFC 6962 hashing: leaf = SHA-256(0x00 || canonical entry), node = SHA-256(0x01 || left ||
// right); the root implied by a leaf and its audit path per RFC 9162 §2.1.3.2 (leaf index and
// tree size). The canonical entry is the compact ASCII JSON array gridctl hashes:
// [seq, tx_id, interval, kind, account, asset, amount] (gridctl.settlement.canonical).
// An ES module without dependencies; WebCrypto needs a secure context (https or localhost).

export const PROOF_VERSION = 1;

const ENTRY_FIELDS = ["seq", "tx_id", "interval", "kind", "account", "asset", "amount"];
const INTEGER_FIELDS = new Set(["seq", "interval", "amount"]);
const HASH_HEX = /^[0-9a-fA-F]{64}$/;
const INTEGER_TEXT = /^-?(0|[1-9][0-9]*)$/;

class Malformed extends Error {}

/** Lowercase hex of bytes. */
export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Bytes of a 32-byte hash given as 64 hex digits; throws Malformed otherwise. */
function hashBytes(hex, what) {
  if (typeof hex !== "string" || !HASH_HEX.test(hex)) {
    throw new Malformed(`${what} is not 64 hex digits`);
  }
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Bytes of a hex string of any even length (test vectors' leaf data). */
export function fromHex(hex) {
  if (typeof hex !== "string" || !/^([0-9a-fA-F]{2})*$/.test(hex)) {
    throw new Malformed("not a hex string");
  }
  return Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
}

/** Parse proof JSON text keeping every integer exact (a BigInt, also beyond 2^53). */
export function parseProof(text) {
  return JSON.parse(text, (_key, value, context) => exact(value, context?.source));
}

/** A JSON number as a BigInt when it is an integer (its source text when the browser gives
 * it), other values unchanged. */
function exact(value, source) {
  if (typeof value !== "number") return value;
  if (source !== undefined) return INTEGER_TEXT.test(source) ? BigInt(source) : value;
  return Number.isSafeInteger(value) ? BigInt(value) : value;
}

/** Integers of an already parsed document as BigInts (numbers beyond 2^53 are refused). */
function exactDeep(value) {
  if (Array.isArray(value)) return value.map(exactDeep);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, exactDeep(v)]));
  }
  return exact(value, undefined);
}

/** Python's json.dumps(s, ensure_ascii=True) of a string: short escapes for " \ \b \f \n
 * \r \t, printable ASCII as is, every other UTF-16 unit as \uXXXX (lowercase hex). */
function pythonJsonString(s) {
  const SHORT = { '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t" };
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    const code = s.charCodeAt(i);
    if (SHORT[ch] !== undefined) out += SHORT[ch];
    else if (code >= 0x20 && code <= 0x7e) out += ch;
    else out += "\\u" + code.toString(16).padStart(4, "0");
  }
  return out + '"';
}

/** The canonical text of a ledger entry (its Merkle leaf data), as gridctl hashes it. */
export function canonicalEntry(entry) {
  if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
    throw new Malformed("an entry is not an object");
  }
  const parts = ENTRY_FIELDS.map((name) => {
    const v = entry[name];
    if (INTEGER_FIELDS.has(name)) {
      if (typeof v !== "bigint") throw new Malformed(`entry field ${name} is not an integer`);
      return v.toString();
    }
    if (typeof v !== "string") throw new Malformed(`entry field ${name} is not a string`);
    return pythonJsonString(v);
  });
  return "[" + parts.join(",") + "]";
}

async function sha256(...parts) {
  const size = parts.reduce((n, p) => n + p.length, 0);
  const buf = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    buf.set(p, at);
    at += p.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
}

/** RFC 6962 leaf hash: SHA-256(0x00 || data). */
export async function leafHash(data) {
  return sha256(Uint8Array.of(0), data);
}

/** RFC 6962 node hash: SHA-256(0x01 || left || right). */
export async function nodeHash(left, right) {
  return sha256(Uint8Array.of(1), left, right);
}

/** Root implied by leaf hash `leaf` at `index` (0-based) in a tree of `size` leaves and its
 * audit path (hex list, from the leaf up), RFC 9162 §2.1.3.2; null when the path does not fit
 * the index and size. Each node hashed is pushed onto `steps` as {op, left, right, hash}. */
export async function rootFromPath(index, size, leaf, path, steps = []) {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (fn < 0n || fn > sn) return null;
  let r = leaf;
  for (const [level, hex] of path.entries()) {
    if (sn === 0n) return null;
    const p = hashBytes(hex, `path[${level}]`);
    const left = fn & 1n || fn === sn;
    const [l, rt] = left ? [p, r] : [r, p];
    r = await nodeHash(l, rt);
    steps.push({ op: "node", level, sibling: left ? "left" : "right", left: toHex(l), right: toHex(rt), hash: toHex(r) });
    if (left && !(fn & 1n)) {
      while (!(fn & 1n) && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n ? r : null;
}

function asInteger(value, what) {
  if (typeof value !== "bigint") throw new Malformed(`${what} is not an integer`);
  return value;
}

/** Check an inclusion proof: every entry is the household's, in the proof's interval, and
 * hashes up its path to the proof's root, which equals `publishedRoot` (hex) when given.
 *
 * proof: the JSON text of `gridctl ledger proof` (integers kept exact) or a parsed object.
 * Returns {ok, message, steps}: steps in order, hashes in lowercase hex — {op: "root", ...}
 * once, then per entry {op: "leaf", entry, seq, data, hash}, its {op: "node", ...} steps and
 * {op: "compare", entry, got, want, ok}.
 */
export async function verifyProof(proof, publishedRoot = null) {
  const steps = [];
  const fail = (message) => ({ ok: false, message, steps });
  if (!globalThis.crypto?.subtle) {
    return fail("WebCrypto is unavailable: open this page over https (or on localhost)");
  }
  let doc;
  try {
    doc = typeof proof === "string" ? parseProof(proof) : exactDeep(proof);
  } catch (err) {
    return fail(`malformed proof: ${err.message}`);
  }
  try {
    if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw new Malformed("not a proof");
    if (doc.version !== BigInt(PROOF_VERSION)) return fail(`unknown proof version ${String(doc.version)}`);
    const size = asInteger(doc.tree_size, "tree_size");
    const interval = asInteger(doc.interval, "interval");
    const stated = hashBytes(doc.root, "root");
    if (typeof doc.household !== "string") throw new Malformed("household is not a string");
    const account = `household:${doc.household}`;
    steps.push({ op: "root", root: toHex(stated), published: publishedRoot === null ? null : String(publishedRoot).toLowerCase() });
    if (publishedRoot !== null && toHex(stated) !== toHex(hashBytes(publishedRoot, "published root"))) {
      return fail("the proof's root is not the published root");
    }
    if (!Array.isArray(doc.entries)) throw new Malformed("entries is not a list");
    for (const [k, e] of doc.entries.entries()) {
      if (e === null || typeof e !== "object") throw new Malformed(`entries[${k}] is not an object`);
      const data = canonicalEntry(e.entry);
      const seq = e.entry.seq;
      if (e.entry.interval !== interval || e.entry.account !== account) {
        return fail(`entry ${seq}: not the household's entry in this interval`);
      }
      if (!Array.isArray(e.path)) throw new Malformed(`entries[${k}].path is not a list`);
      const leaf = await leafHash(new TextEncoder().encode(data));
      steps.push({ op: "leaf", entry: k, seq: seq.toString(), data, hash: toHex(leaf) });
      const nodes = [];
      const got = await rootFromPath(asInteger(e.leaf_index, `entries[${k}].leaf_index`), size, leaf, e.path, nodes);
      steps.push(...nodes.map((s) => ({ ...s, entry: k })));
      const same = got !== null && toHex(got) === toHex(stated);
      steps.push({ op: "compare", entry: k, got: got === null ? null : toHex(got), want: toHex(stated), ok: same });
      if (!same) return fail(`entry ${seq} (${e.entry.kind}): not included under the root`);
    }
    const n = doc.entries.length;
    return {
      ok: true,
      message: `${n} entr${n === 1 ? "y" : "ies"} of ${doc.household} included in interval ${interval} under root ${toHex(stated)} (${size} leaves)`,
      steps,
    };
  } catch (err) {
    if (err instanceof Malformed || err instanceof TypeError || err instanceof RangeError) {
      return fail(`malformed proof: ${err.message}`);
    }
    throw err;
  }
}
