// Live community values on the community page: follows the server-sent events of
// section#live's data-live-url and writes each value into its element (text only). After the
// server restarts the stream comes back by itself: the browser's own retry (the server asks for
// 1 s), and a new EventSource, with backoff, when the browser gives one up.
const section = document.getElementById("live");
const MAX_DELAY_MS = 10000;
let delayMs = 500;

function text(id, value) {
  const el = document.getElementById(id);
  if (el) el.textContent = value;
}

function list(id, items, empty) {
  const ul = document.getElementById(id);
  if (!ul) return;
  ul.replaceChildren(...(items.length ? items : [empty]).map((t) => {
    const li = document.createElement("li");
    li.textContent = t;
    return li;
  }));
}

function price(prices, key) {
  return prices && Number.isFinite(prices[key]) ? `${prices[key].toFixed(4)} per kWh` : "unknown";
}

// the community's plan of the current interval (section#plan, plan_actual.html)
function showPlan(p) {
  if (!p) return;
  text("plan-when", p.start);
  for (const [key, value] of Object.entries(p.figures)) text(`plan-${key}`, value);
  text("plan-note", "");
  list("plan-in-force", p.in_force, "None in this interval.");
}

// the last settled interval's public aggregates beside it (when the coordinator publishes them)
function showActual(a) {
  if (!a) return;
  text("actual-when", a.start);
  for (const [key, value] of Object.entries(a.figures)) text(`actual-${key}`, value);
}

function show(s) {
  text("live-state", s.broker ? "Live." : "The community's broker cannot be reached; showing the last values.");
  text("live-coordinator", s.coordinator ?? "unknown");
  text("live-online", String(s.households_online));
  text("live-last-interval", s.last_interval ?? "none yet");
  text("live-last-root", s.last_root ?? "none yet");
  text("live-community-price", price(s.prices, "community_per_kwh"));
  text("live-import-price", price(s.prices, "import_per_kwh"));
  text("live-feed-in-price", price(s.prices, "feed_in_per_kwh"));
  list("live-parameters", Object.entries(s.parameters ?? {}).map(([k, v]) => `${k}: ${v}`), "none published yet");
  list("live-scheduled", (s.scheduled ?? []).map(
    (c) => `${c.parameter} becomes ${c.value} from interval ${c.enact_at} (proposal ${c.proposal})`), "none");
  showPlan(s.plan);
  showActual(s.actual);
}

function connect() {
  const source = new EventSource(section.dataset.liveUrl);
  source.addEventListener("community", (ev) => {
    delayMs = 500;
    show(JSON.parse(ev.data));
  });
  source.onerror = () => {
    text("live-state", "Reconnecting to the server…");
    if (source.readyState === EventSource.CLOSED) {
      setTimeout(connect, delayMs);
      delayMs = Math.min(2 * delayMs, MAX_DELAY_MS);
    }
  };
}

if (section) connect();
