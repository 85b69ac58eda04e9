// A household's devices now and its plan on its own page: follows the server-sent events of
// section#now's data-live-url (authorized like the page: this household or the operator) and
// rewrites the two lists (text only). Reconnects with backoff after the server restarts.
import { follow, setItems } from "./stream.js";

const section = document.getElementById("now");

function state(message) {
  document.getElementById("own-state").textContent = message;
}

function devices(rows) {
  const items = rows ?? [["Devices", "Nothing received from your controller yet."]];
  document.getElementById("own-devices").replaceChildren(...items.flatMap(([what, value]) => {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = what;
    dd.textContent = value;
    return [dt, dd];
  }));
}

function plan(lines) {
  let items = lines;
  if (lines === null) items = ["No plan received from the community yet."];
  else if (!lines.length) items = ["Your plan has no step for the coming hours: your controller runs on its own safe fallback."];
  setItems(document.getElementById("own-plan"), items);
}

if (section?.dataset.liveUrl) {
  follow(section.dataset.liveUrl, "household", (s) => {
    devices(s.devices);
    plan(s.plan);
    state("Live: as your controller reports it.");
  }, () => state("Reconnecting to the server…"));
}
