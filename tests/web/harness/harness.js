// Test page for proof.js: exposes the module to the tests and, given ?proof=URL[&root=HEX],
// fetches that proof from this origin, checks it and lists the steps, as the household page does.
import * as proof from "./proof.js";

window.gridctlProof = proof;
const params = new URLSearchParams(location.search);
if (params.has("proof")) {
  const text = await (await fetch(params.get("proof"))).text();
  const result = await proof.verifyProof(text, params.get("root"));
  document.getElementById("result").textContent = `${result.ok ? "holds" : "fails"}: ${result.message}`;
  const list = document.getElementById("steps");
  for (const step of result.steps) {
    const item = document.createElement("li");
    item.textContent = Object.entries(step).map(([k, v]) => `${k}=${v}`).join(" ");
    list.append(item);
  }
}
document.body.dataset.ready = "1";
