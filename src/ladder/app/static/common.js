// What both pages' scripts share: the strings and token the page hands over (#boot), making elements
// (text with textContent only, never as HTML), byte counts for people, and calls to the page's JSON API
// with its CSRF token, whose errors show in the page's error line.
"use strict";

const boot = JSON.parse(document.getElementById("boot").textContent);
const S = boot.strings;
const $ = (id) => document.getElementById(id);

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) {
    const td = el("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell === null ? "–" : String(cell);
    tr.appendChild(td);
  }
  return tr;
}

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  n = Number(n) || 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n.toFixed(0)) + " " + units[i];
}

function showError(message) {
  const box = $("error");
  box.textContent = message ? S.error + ": " + message : "";
  box.hidden = !message;
}

async function call(method, path, body) {
  const options = { method, headers: { "X-Ladder-CSRF": boot.csrf }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const answer = await fetch(path, options);
  const kind = answer.headers.get("Content-Type") || "";
  const data = kind.startsWith("application/json") ? await answer.json() : { error: await answer.text() };
  if (!answer.ok) { showError(data.error || answer.statusText); throw new Error(data.error); }
  showError("");
  return data;
}
const get = (path) => call("GET", path);
const post = (path, body) => call("POST", path, body || {});
const quietly = (f) => (...args) => f(...args).catch(() => {}); // the error box already says why

// On a narrow screen each row of a table is a card (app.css), so every cell carries its column's name.
function labelCells(body) {
  const heads = [...(body.parentElement.querySelectorAll("thead th") || [])].map((th) => th.textContent);
  for (const tr of body.rows) {
    const filled = [...tr.cells].filter((td) => td.textContent || td.children.length).length;
    if (filled <= 1) continue; // "nothing yet" says so itself
    [...tr.cells].forEach((td, i) => { if (heads[i]) td.dataset.label = heads[i]; });
  }
}
new MutationObserver((changes) => {
  for (const change of changes) if (change.target.tagName === "TBODY") labelCells(change.target);
}).observe(document.body, { childList: true, subtree: true });
