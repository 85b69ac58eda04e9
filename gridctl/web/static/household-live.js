// A household's devices now and its plan on its own page: follows the server-sent events of
// section#now's data-live-url (authorized like the page: this household or the operator) and
// rewrites the two lists (text only). Reconnects with backoff after the server restarts.
const section = document.getElementById("now");
const MAX_DELAY_MS = 10000;
let delayMs = 500;

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
  document.getElementById("own-plan").replaceChildren(...items.map((t) => {
    const li = document.createElement("li");
    li.textContent = t;
    return li;
  }));
}

function connect() {
  const source = new EventSource(section.dataset.liveUrl);
  source.addEventListener("household", (ev) => {
    delayMs = 500;
    const s = JSON.parse(ev.data);
    devices(s.devices);
    plan(s.plan);
    state("Live: as your controller reports it.");
  });
  source.onerror = () => {
    state("Reconnecting to the server…");
    if (source.readyState === EventSource.CLOSED) {
      setTimeout(connect, delayMs);
      delayMs = Math.min(2 * delayMs, MAX_DELAY_MS);
    }
  };
}

if (section?.dataset.liveUrl) connect();
