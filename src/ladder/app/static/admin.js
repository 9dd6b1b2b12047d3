// The hub's admin page: fills every panel from /api/state every few seconds, and sends each action
// as a POST of JSON (common.js: with the page's CSRF token). Text goes in with textContent only.
"use strict";

const REFRESH_MS = 4000;

function when(stamp) {
  return stamp ? new Date(stamp * 1000).toLocaleString(boot.lang) : "–";
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m";
}

function button(label, test, action, confirmText) {
  const b = el("button", label, { "data-test": test });
  b.addEventListener("click", quietly(async () => {
    if (confirmText && !window.confirm(confirmText)) return;
    await action();
    await refresh();
  }));
  return b;
}

function fill(id, rows, emptyText, width) {
  const body = $(id);
  if (!rows.length) {
    const cells = [emptyText];
    while (cells.length < width) cells.push("");
    body.replaceChildren(row(cells));
    return;
  }
  body.replaceChildren(...rows);
}

function showHealth(h) {
  $("hub-name").textContent = h.name;
  $("health-version").textContent = h.version;
  $("health-uptime").textContent = duration(h.uptime);
  const links = h.links;
  $("health-links").textContent = S["role.user"] + " " + links.member + " · " + S["role.device"] + " "
    + links.device + " · " + S["role.peer"] + " " + links.peer;
  $("health-links").dataset.members = String(links.member);
  $("health-streams").textContent = String(h.streams);
  $("health-store").textContent = h.store_ok ? S["health.store_ok"] : S["health.store_bad"];
  $("health-store").dataset.ok = String(h.store_ok);
  $("health-certificate").textContent = when(h.certificate_expires) + " (" + h.certificate_days + " "
    + S["health.days"] + ")";
  $("health-address").textContent = h.public_address;
  $("health-fingerprint").textContent = h.fingerprint;
}

function showMembers(members) {
  fill("member-list", members.map((m) => {
    const state = m.revoked ? "revoked" : m.online ? "online" : "offline";
    const remove = m.revoked ? "" : button(S["members.revoke"], "member-revoke",
      () => post("/api/members/revoke", { name: m.name }), S["members.confirm"]);
    const tr = row([m.name, S["state." + state], m.online ? S["role." + m.online] || m.online : "–",
                    bytes(m.balance), bytes(m.used), bytes(m.shared), m.devices, when(m.last_seen),
                    m.release || "–", remove]);
    tr.dataset.member = m.name;
    tr.dataset.state = state;
    return tr;
  }), S["members.none"], 10);
}

function showExits(countries) {
  fill("exit-list", countries.map((c) => row([c.country, c.exits.length, c.exits.map((e) =>
    e.name + (e.hub ? " (" + S["exits.remote"] + " " + e.hub + ")" : "")).join(", ")])), S["exits.none"], 3);
}

function showInvites(invites) {
  fill("invite-list", invites.map((i) => {
    const tr = row([i.name, i.uses_left + " " + S["invites.left"],
                    i.expires ? when(i.expires) : S["invites.never"],
                    button(S["invites.revoke"], "invite-revoke",
                           () => post("/api/invites/revoke", { name: i.name }))]);
    tr.dataset.invite = i.name;
    return tr;
  }), S["invites.none"], 4);
}

function showDevices(devices) {
  fill("device-list", devices.map((d) => {
    const label = d.owner + "/" + d.name;
    const state = d.revoked ? "revoked" : d.online ? "online" : "offline";
    const revoke = d.revoked ? "" : button(S["devices.revoke"], "device-revoke",
      () => post("/api/devices/revoke", { name: label }), S["devices.confirm"]);
    const tr = row([label, S["state." + state], bytes(d.bytes_today), bytes(d.bytes_total), d.exit,
                    d.expires ? when(d.expires) : S["invites.never"], revoke]);
    tr.dataset.device = label;
    tr.dataset.state = state;
    return tr;
  }), S["devices.none"], 7);
}

function showPeers(peers, routes) {
  fill("peer-list", peers.map((p) => {
    const state = p.pending ? "invited" : p.up ? "up" : "down";
    const ledger = p.ledger ? (p.ledger.holds ? p.ledger.size : S["peers.forked"]) : "–";
    const rtt = p.rtt_ms === null || p.rtt_ms === undefined ? "–" : p.rtt_ms + " " + S["unit.ms"];
    const tr = row([p.name, S["peers." + state], rtt, p.routes, bytes(p.bytes), ledger]);
    tr.dataset.peer = p.name;
    tr.dataset.state = state;
    return tr;
  }), S["peers.none"], 6);
  fill("route-list", routes.map((r) => row([r.member, r.via, r.hops])), S["peers.no_routes"], 3);
}

function showLedger(ledger) {
  $("ledger-entries").textContent = String(ledger.entries);
  const c = ledger.checkpoint;
  $("ledger-checkpoint").textContent = c ? S["ledger.size"] + " " + c.size + " · " + S["ledger.time"] + " "
    + when(c.time) : S["ledger.none"];
  $("ledger-root").textContent = c ? c.root : "";
}

async function refresh() {
  const state = await get("/api/state");
  showHealth(state.health);
  showMembers(state.members);
  showExits(state.exits);
  showInvites(state.invites);
  showDevices(state.devices);
  showPeers(state.peers, state.routes);
  showLedger(state.ledger);
}

$("invite-form").addEventListener("submit", quietly(async (event) => {
  event.preventDefault();
  const made = await post("/api/invites", { name: $("invite-name").value.trim(),
                                             uses: Number($("invite-uses").value) || 1,
                                             expires: $("invite-expires").value.trim() });
  $("invite-qr").src = made.qr;
  $("invite-link").textContent = made.link;
  $("invite-made").hidden = false;
  await refresh();
}));
$("ledger-verify").addEventListener("click", quietly(async () => {
  $("ledger-note").textContent = S["working"];
  const found = await post("/api/ledger/verify");
  $("ledger-note").textContent = found.verified ? S["ledger.verified"] + ": " + found.entries
    : S["ledger.problem"] + ": " + found.problem;
  $("ledger-note").dataset.verified = String(found.verified);
}));

quietly(refresh)();
setInterval(quietly(refresh), REFRESH_MS);
