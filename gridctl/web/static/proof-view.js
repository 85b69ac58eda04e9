// Show a proof check on a page: fetch the proof JSON, check it with proof.js and list every
// hashing step. Binds on import every <button data-proof-url data-proof-root data-proof-out>:
// a click checks the proof at data-proof-url against data-proof-root (the published root, hex)
// and writes into the element whose id is data-proof-out. Text only (no HTML from the proof).

import { verifyProof } from "./proof.js";

const reached = (hex) => (hex === null ? "nothing (the path does not fit the tree)" : hex);

/** One line of plain language per step of verifyProof. */
export function describeStep(step) {
  switch (step.op) {
    case "root":
      return step.published === null
        ? `Root in the proof: ${step.root}`
        : `Root in the proof: ${step.root}; root the coordinator published: ${step.published}`;
    case "leaf":
      return `Entry ${step.seq}: leaf = SHA-256(00 ‖ ${step.data}) = ${step.hash}`;
    case "node":
      return `Level ${step.level}: SHA-256(01 ‖ ${step.left} ‖ ${step.right}) = ${step.hash}`;
    case "compare":
      return `Reached ${reached(step.got)}: ${step.ok ? "equals" : "does not equal"} the root ${step.want}`;
    default:
      return JSON.stringify(step);
  }
}

/** Write a check's outcome and steps into `out` (replacing what was there). */
export function render(result, out) {
  const outcome = document.createElement("p");
  outcome.className = result.ok ? "proof-outcome proof-holds" : "proof-outcome proof-fails";
  outcome.textContent = `${result.ok ? "Proof holds" : "Proof fails"}: ${result.message}`;
  const list = document.createElement("ol");
  list.className = "proof-steps";
  for (const step of result.steps) {
    const item = document.createElement("li");
    item.dataset.op = step.op;
    item.textContent = describeStep(step);
    list.append(item);
  }
  out.replaceChildren(outcome, list);
}

/** Fetch the proof at `url` (this origin), check it against `root` and show it in `out`. */
export async function showProof(url, root, out) {
  let result;
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    result = response.ok
      ? await verifyProof(await response.text(), root || null)
      : { ok: false, message: `the server answered ${response.status} for the proof`, steps: [] };
  } catch (err) {
    result = { ok: false, message: `the proof could not be fetched: ${err.message}`, steps: [] };
  }
  render(result, out);
  return result;
}

/** Bind every proof button under `scope`. */
export function bindProofButtons(scope = document) {
  for (const button of scope.querySelectorAll("button[data-proof-url]")) {
    button.addEventListener("click", async () => {
      const out = document.getElementById(button.dataset.proofOut);
      button.disabled = true;
      try {
        await showProof(button.dataset.proofUrl, button.dataset.proofRoot, out);
      } finally {
        button.disabled = false;
      }
    });
  }
}

bindProofButtons();
