// Live community values on the community page: follows the server-sent events of
// section#live's data-live-url and writes each value into its element (text only); the stream
// comes back by itself after the server restarts (stream.js).
import { follow, setItems } from "./stream.js";

const section = document.getElementById("live");

function text(id, value) {
  const el = document.getElementById(id);
  if (el) el.textContent = value;
}

function list(id, items, empty) {
  const ul = document.getElementById(id);
  if (!ul) return;
  setItems(ul, items.length ? items : [empty]);
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
  feeder(s.feeder);
}

if (section) {
  follow(section.dataset.liveUrl, "community", show,
    () => text("live-state", "Reconnecting to the server…"));
}

// The feeder diagram (gridctl/web/feeder_svg.py): the coordinator's planned power flow of the
// interval it executes. Only figures the message carries change (the coordinator leaves out
// those covering fewer than k homes); the classes are feeder_svg.py's, the thresholds its data-.
const STATES = {
  "v-ok": "within the band", "v-near": "near a limit", "v-out": "outside the band",
  "ld-ok": "below 80 %", "ld-high": "80 to 100 %", "ld-over": "above 100 %",
};

function vClass(v, d) {
  if (v < +d.vMin || v > +d.vMax) return "v-out";
  if (v < +d.vMin + +d.near || v > +d.vMax - +d.near) return "v-near";
  return "v-ok";
}

function loadingClass(pct, d) {
  return pct > +d.over ? "ld-over" : pct >= +d.high ? "ld-high" : "ld-ok";
}

function element(key, cls, figure) {
  const el = document.getElementById(`fd-${key}`);
  if (!el) return;
  const kind = el.classList.contains("trafo") ? "br trafo" : el.tagName === "circle" ? "bus" : "br";
  el.setAttribute("class", `${kind} ${cls}`);
  const title = el.querySelector("title");
  const homes = el.dataset.homes ? ` (homes: ${el.dataset.homes})` : "";
  if (title) title.textContent = `${el.dataset.name}: ${figure}${homes}`;
  text(`fd-v-${key}`, figure);
  text(`fd-s-${key}`, STATES[cls]);
}

let feederInterval = null; // the interval the diagram shows, once live

function feeder(f) {
  const svg = document.getElementById("feeder-svg");
  if (!svg || !f || f.topology !== svg.dataset.topology || f.interval === feederInterval) return;
  feederInterval = f.interval;
  if (svg.dataset.full === "1") { // the operator's page: every figure, from the server's record
    fetch("/feeder.json", { cache: "no-store" })
      .then((r) => (r.ok ? r.json() : null))
      .then((all) => { if (all && all.topology === f.topology) draw(all, svg.dataset); })
      .catch(() => {});
  } else {
    draw(f, svg.dataset);
  }
}

function draw(f, d) {
  f.v_upu.forEach((v, k) => {
    if (v !== null) element(`b${k}`, vClass(v / 1e6, d), `${(v / 1e6).toFixed(4)} p.u.`);
  });
  f.loading_ppm.forEach((x, k) => {
    if (x !== null) element(`r${k}`, loadingClass(x / 1e4, d), `${(x / 1e4).toFixed(1)} %`);
  });
  text("feeder-when", `As the coordinator planned interval ${f.interval}: an AC power flow of its plan, not a measurement.`);
}
