// Member votes signed in the browser. The member key file (`gridctl member keygen`: an Ed25519
// private key, PKCS#8 PEM) is read here and imported into WebCrypto; the vote is signed here
// and only the signed vote is sent: the key never leaves the browser.
//
// The signature covers, as gridctl/governance/votes.py verifies it:
//   "gridctl/vote/v1" || canonical([community, proposal, household, choice, seq, key_id])
// canonical = compact ASCII JSON; every string here is [A-Za-z0-9_-] or hex and every number a
// safe integer, so JSON.stringify gives exactly those bytes. key_id = first 8 bytes of
// SHA-256(public key), hex.
const DOMAIN = "gridctl/vote/v1";
const NAME = /^[A-Za-z0-9_-]{1,32}$/;
const MAX_KEY_FILE = 4096;
const section = document.getElementById("voting");
let member = null; // {privateKey, keyId}

const hex = (bytes) => Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");

function base64url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
}

function pemBody(pem) {
  const m = /-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\s]+)-----END PRIVATE KEY-----/.exec(pem);
  if (!m) throw new Error("this is not a member key file (no PEM private key in it)");
  return Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
}

async function loadKey(file) {
  if (file.size > MAX_KEY_FILE) throw new Error("this file is too large to be a member key");
  let privateKey;
  try {
    privateKey = await crypto.subtle.importKey("pkcs8", pemBody(await file.text()), { name: "Ed25519" }, true, ["sign"]);
  } catch (e) {
    throw new Error(e.message.startsWith("this is not") ? e.message : "this is not an Ed25519 member key");
  }
  const publicKey = base64url((await crypto.subtle.exportKey("jwk", privateKey)).x);
  const keyId = hex(await crypto.subtle.digest("SHA-256", publicKey)).slice(0, 16);
  return { privateKey, keyId };
}

async function signedVote(community, proposal, household, choice) {
  if (!NAME.test(community) || !NAME.test(household)) throw new Error("unexpected community or household id");
  const seq = Date.now(); // the highest counts: a later vote replaces an earlier one
  const payload = DOMAIN + JSON.stringify([community, proposal, household, choice, seq, member.keyId]);
  const sig = await crypto.subtle.sign({ name: "Ed25519" }, member.privateKey, new TextEncoder().encode(payload));
  return { v: 1, community, proposal, household, choice, seq, key_id: member.keyId, sig: hex(sig) };
}

async function send(form, out) {
  const choice = new FormData(form).get("choice");
  if (!member) throw new Error("load your member key file first");
  if (!choice) throw new Error("choose yes, no or abstain");
  const proposal = Number(form.dataset.proposal);
  const vote = await signedVote(section.dataset.community, proposal, section.dataset.household, String(choice));
  const response = await fetch(form.action, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": section.dataset.csrf },
    body: JSON.stringify(vote),
    credentials: "same-origin",
  });
  const answer = await response.json().catch(() => ({ error: `the server answered ${response.status}` }));
  if (!response.ok) throw new Error(answer.error ?? `the server answered ${response.status}`);
  out.textContent = answer.message;
}

if (section) {
  const state = document.getElementById("key-state");
  document.getElementById("member-key").addEventListener("change", async (ev) => {
    member = null;
    const file = ev.target.files[0];
    if (!file) return;
    try {
      member = await loadKey(file);
      state.textContent = `Key ${member.keyId} loaded (kept in this page only).`;
    } catch (e) {
      state.textContent = `Key not loaded: ${e.message}.`;
    }
  });
  for (const form of document.querySelectorAll("form.vote")) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = form.querySelector(".vote-out");
      out.textContent = "Signing…";
      try {
        await send(form, out);
        out.classList.remove("error");
      } catch (e) {
        out.textContent = `Not sent: ${e.message}`;
        out.classList.add("error");
      }
    });
  }
}
