// The member's dashboard: fills the page from /api/state and the /api/events stream, and sends
// each action as a POST of JSON (common.js: with the page's CSRF token). Text goes in with textContent only.
"use strict";

const samples = []; // [t, up, down] of the last GRAPH_SECONDS seconds
const GRAPH_SECONDS = 120;

// ------------------------------------------------------------------ link and exits

function showLink(status) {
  const state = status.state;
  $("link-state").textContent = S["state." + state] || state;
  $("link-state").dataset.state = state;
  const button = $("connect");
  const off = state === "off";
  button.textContent = off ? button.dataset.off : button.dataset.on;
  button.dataset.state = off ? "off" : "on";
  $("link-hub").textContent = status.hub + " (" + status.hub_address + ")";
  $("link-since").textContent = status.since ? new Date(status.since * 1000).toLocaleString(boot.lang) : "–";
  $("link-proxy").textContent = status.proxy || "–";
}

function showExits(exits, status) {
  const select = $("exit-choice");
  const choice = status.exit_choice || "auto";
  const options = [["auto", S["exits.auto"]]];
  const countries = [...new Set(exits.map((e) => e.country).filter(Boolean))].sort();
  for (const c of countries) options.push([c, S["exits.country"] + ": " + c]);
  for (const e of exits) options.push([e.name, S["exits.member"] + ": " + e.name]);
  if (!options.some(([v]) => v === choice)) options.push([choice, choice]);
  select.replaceChildren(...options.map(([value, label]) => {
    const option = el("option", label, { value });
    option.selected = value === choice;
    return option;
  }));
  const body = $("exits");
  if (!exits.length) { body.replaceChildren(row([S["exits.none"], "", "", "", "", ""])); return; }
  body.replaceChildren(...exits.map((e) => {
    const use = el("button", e.chosen ? S["exits.chosen"] : S["exits.use"], { "data-test": "exit-use" });
    use.disabled = e.chosen || !e.admits_me;
    use.addEventListener("click", () => chooseExit(e.name));
    const latency = e.latency_ms === null || e.latency_ms === undefined ? "–" : e.latency_ms + " " + S["unit.ms"];
    const tr = row([e.name + (e.admits_me ? "" : " (" + S["exits.closed"] + ")"), e.country || "??", latency,
                    (e.streams || 0) + " / " + (e.users || 0), S["exits.rate_value"], use]);
    tr.dataset.exit = e.name;
    return tr;
  }));
}

async function chooseExit(choice) {
  const data = await post("/api/exit", { choice });
  showExits(data.exits, { exit_choice: choice });
}

// ------------------------------------------------------------------ traffic

function drawGraph() {
  const canvas = $("graph");
  const width = canvas.clientWidth || canvas.width;
  canvas.width = width;
  const height = canvas.height;
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, width, height);
  const peak = Math.max(1, ...samples.map((s) => Math.max(s[1], s[2])));
  const step = width / (GRAPH_SECONDS - 1);
  const offset = GRAPH_SECONDS - samples.length;
  for (const [index, color] of [[2, "#1565c0"], [1, "#e65100"]]) {
    g.beginPath();
    g.strokeStyle = color;
    g.lineWidth = 2;
    samples.forEach((s, i) => {
      const x = (offset + i) * step, y = height - 4 - (s[index] / peak) * (height - 8);
      if (i) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
  }
  const last = samples[samples.length - 1] || [0, 0, 0];
  canvas.dataset.samples = String(samples.length);
  canvas.dataset.down = String(last[2]);
  canvas.dataset.up = String(last[1]);
  canvas.dataset.peak = String(peak);
  $("rate-up").textContent = bytes(last[1]) + "/" + S["unit.s"];
  $("rate-down").textContent = bytes(last[2]) + "/" + S["unit.s"];
}

function showTotals(totals) {
  if (!totals) return;
  const sum = (pair) => (pair ? (pair.up || 0) + (pair.down || 0) : 0);
  $("total-today").textContent = bytes(sum(totals.today));
  $("total-month").textContent = bytes(sum(totals.this_month));
}

function showConnections(connections) {
  const body = $("connections");
  if (!connections.length) { body.replaceChildren(row([S["conns.none"], "", "", "", "", ""])); return; }
  body.replaceChildren(...connections.map((c) => {
    const close = el("button", S["conns.close"], { "data-test": "connection-close" });
    close.addEventListener("click", () => post("/api/connections/close", { id: c.id }));
    const via = c.route === "direct" ? S["conns.direct"] : c.route === "service" ? S["conns.service"]
      : c.route.replace(/^exit:/, "");
    const tr = row([c.host + ":" + c.port, via, bytes(c.rate_up + c.rate_down) + "/" + S["unit.s"],
                    bytes(c.up + c.down), Math.round(c.age) + " " + S["unit.s"], close]);
    tr.dataset.host = c.host;
    tr.dataset.id = String(c.id);
    tr.setAttribute("data-test", "connection");
    return tr;
  }));
}

function listen() {
  const stream = new EventSource("/api/events");
  stream.addEventListener("tick", (message) => {
    const tick = JSON.parse(message.data);
    samples.push([tick.t, tick.up, tick.down]);
    while (samples.length > GRAPH_SECONDS) samples.shift();
    drawGraph();
    showConnections(tick.connections);
    showTotals(tick.totals);
    if ($("link-state").dataset.state !== tick.state) refresh();
  });
}

// ------------------------------------------------------------------ sharing

function showSharing(view) {
  if (!view) return;
  const button = $("share-toggle");
  button.textContent = view.on ? button.dataset.on : button.dataset.off;
  button.dataset.state = view.on ? "on" : "off";
  $("share-state").textContent = (view.on ? S["share.on"] : S["share.off"])
    + (view.paused ? " · " + S["share.paused"] + ": " + view.paused : "");
  if (view.country && !$("share-country").value) $("share-country").value = view.country;
  const form = $("policy-form");
  if (!form.dataset.filled && view.policy) {
    for (const [key, value] of Object.entries(view.policy)) {
      const field = form.elements.namedItem(key);
      if (!field) continue;
      if (field.type === "checkbox") field.checked = Boolean(value);
      else field.value = Array.isArray(value) ? value.join(",") : value === null ? "" : String(value);
    }
    form.dataset.filled = "1";
  }
  const usage = view.members || {};
  const now = new Map((view.users || []).map((u) => [u.name, u]));
  const names = [...new Set([...now.keys(), ...Object.keys(usage)])].sort();
  $("share-users").replaceChildren(...(names.length ? names.map((name) => row([
    name, now.has(name) ? now.get(name).streams : 0, bytes((usage[name] || {}).today),
    bytes((usage[name] || {}).month)])) : [row([S["share.none"], "", "", ""])]));
  $("share-earned").textContent = view.earned === null || view.earned === undefined ? "–" : bytes(view.earned);
}

async function saveShareToggle() {
  const on = $("share-toggle").dataset.state !== "on";
  const country = $("share-country").value.trim().toUpperCase() || null;
  showSharing(await post("/api/sharing", { on, country }));
}

async function savePolicy(event) {
  event.preventDefault();
  const table = {};
  for (const field of event.target.elements) {
    if (!field.name) continue;
    if (field.type === "checkbox") table[field.name] = field.checked;
    else if (field.value.trim()) table[field.name] = field.value.trim();
  }
  if (table.ports) table.ports = table.ports.split(",").map((p) => p.trim()).filter(Boolean);
  if (table.schedule) table.schedule = table.schedule.split(",").map((p) => p.trim()).filter(Boolean);
  showSharing(await post("/api/policy", table));
  $("policy-note").textContent = S["share.saved"];
}

// ------------------------------------------------------------------ devices, services, search, credits

async function loadDevices() {
  const devices = await get("/api/devices");
  $("device-list").replaceChildren(...(devices.length ? devices.map((d) => {
    const remove = el("button", S["devices.remove"], { "data-test": "device-remove" });
    remove.addEventListener("click", async () => { await post("/api/devices/remove", { name: d.name }); loadDevices(); });
    const tr = row([d.name, d.online ? S["devices.online"] : S["devices.offline"],
                    S["devices.today"] + ": " + bytes(d.bytes_today), remove]);
    tr.dataset.device = d.name;
    return tr;
  }) : [row([S["devices.none"]])]));
}

async function addDevice(event) {
  event.preventDefault();
  const added = await post("/api/devices", { name: $("device-name").value.trim() });
  $("device-qr").src = added.qr;
  $("device-link").textContent = added.link;
  $("device-added").hidden = false;
  loadDevices();
}

async function loadServices() {
  const services = await get("/api/services");
  $("service-list").replaceChildren(...(services.mine.length ? services.mine.map((s) => {
    const remove = el("button", S["services.remove"], { "data-test": "service-remove" });
    remove.addEventListener("click", async () => { await post("/api/services/remove", { name: s.name }); loadServices(); });
    const link = el("a", s.url, { href: s.url });
    const tr = row([s.name, link, s.address, s.title, remove]);
    tr.dataset.service = s.name;
    return tr;
  }) : [row([S["services.none"]])]));
  $("network-services").replaceChildren(...services.network.map((s) => {
    const url = "http://" + (s.name || "") + "/";
    const by = S["services.by"] + " " + s.publisher + (s.hub ? "@" + s.hub : "");
    return row([el("a", s.name, { href: url }), s.title || "", by,
                s.online === false ? S["services.offline"] : S["services.online"]]);
  }));
}

async function publish(event) {
  event.preventDefault();
  const form = event.target, body = {};
  for (const field of form.elements) if (field.name) body[field.name] = field.value.trim();
  await post("/api/services", body);
  form.reset();
  loadServices();
}

async function search(event) {
  event.preventDefault();
  const words = $("search-words").value.trim();
  const found = await get("/api/search?q=" + encodeURIComponent(words));
  const list = $("search-results");
  if (!found.results.length) { list.replaceChildren(el("li", S["search.none"])); return; }
  list.replaceChildren(...found.results.map((r) => {
    const item = el("li", null, { "data-test": "search-result" });
    item.appendChild(el("a", r.title || r.url, { href: r.url }));
    if (!r.online) item.appendChild(el("span", " (" + S["search.offline"] + ")"));
    item.appendChild(el("p", r.snippet));
    item.appendChild(el("small", r.url + " · " + r.hub));
    return item;
  }));
}

function showCredits(report) {
  $("credit-balance").textContent = bytes(report.balance);
  $("credit-earned").textContent = bytes(report.earned);
  $("credit-spent").textContent = bytes(report.spent);
  $("credit-limit").textContent = report.limit ? bytes(report.limit) : "–";
  const entries = report.entries || [];
  $("credit-history").replaceChildren(...(entries.length ? entries.map((e) => row([
    e.time ? new Date(e.time * 1000).toLocaleString(boot.lang) : "–", e.with || e.other || "",
    bytes(e.amount !== undefined ? e.amount : e.bytes)])) : [row([S["credits.none"]])]));
}

async function loadCredits() { showCredits(await get("/api/credits")); }

async function verifyCredits() {
  $("credits-note").textContent = S["working"];
  const report = await post("/api/credits/verify");
  showCredits(report);
  $("credits-note").textContent = S["credits.verified"] + ": " + report.verified + " " + S["credits.entries"];
}

// ------------------------------------------------------------------ wiring

async function refresh() {
  const state = await get("/api/state");
  showLink(state.status);
  showExits(state.exits, state.status);
  showSharing(state.sharing);
  showTotals(state.traffic.totals);
  showConnections(state.connections);
  if (!samples.length) {
    for (const s of state.traffic.series.slice(-GRAPH_SECONDS)) samples.push(s);
    drawGraph();
  }
}

$("connect").addEventListener("click", quietly(async () => {
  await post("/api/connect", { on: $("connect").dataset.state === "off" });
  await refresh();
}));
$("exit-choice").addEventListener("change", quietly(async (event) => chooseExit(event.target.value)));
$("where-form").addEventListener("submit", quietly(async (event) => {
  event.preventDefault();
  const answer = await get("/api/where?host=" + encodeURIComponent($("where-host").value.trim()));
  const how = answer.action === "exit" ? S["where.exit"] + " " + (answer.exit || "?") : S["where." + answer.action];
  $("where-answer").textContent = answer.host + ": " + how + (answer.rule ? " · " + S["where.rule"] + " “"
    + answer.rule + "”" : "");
  $("where-answer").dataset.action = answer.action;
}));
$("share-toggle").addEventListener("click", quietly(saveShareToggle));
$("policy-form").addEventListener("submit", quietly(savePolicy));
$("device-form").addEventListener("submit", quietly(addDevice));
$("service-form").addEventListener("submit", quietly(publish));
$("search-form").addEventListener("submit", quietly(search));
$("credits-load").addEventListener("click", quietly(loadCredits));
$("credits-verify").addEventListener("click", quietly(verifyCredits));

quietly(refresh)();
quietly(loadDevices)();
quietly(loadServices)();
listen();
setInterval(quietly(refresh), 5000);
