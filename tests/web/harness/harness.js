// Test page for proof.js and proof-view.js: exposes proof.js to the tests; ?proof=URL and
// ?root=HEX set what the page's button checks, as the household page's template does.
import * as proof from "./proof.js";
import "./proof-view.js";

window.gridctlProof = proof;
const params = new URLSearchParams(location.search);
const button = document.querySelector("button[data-proof-url]");
if (params.has("proof")) button.dataset.proofUrl = params.get("proof");
if (params.has("root")) button.dataset.proofRoot = params.get("root");
document.body.dataset.ready = "1";
