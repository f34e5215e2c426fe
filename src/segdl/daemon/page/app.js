// segdl daemon's page: plain JavaScript over the daemon's JSON-RPC WebSocket (aria2's calls).
// Everything the server sends is shown with textContent, never parsed as HTML.
"use strict";

const KEYS = ["gid", "status", "totalLength", "completedLength", "downloadSpeed",
  "connections", "files", "errorMessage", "dir"];
const SAMPLES = 120;            // seconds of throughput kept for the chart
const POLL_MS = 1000;

const state = {
  socket: null, nextId: 1, pending: new Map(), secret: localStorage.getItem("segdl.secret"),
  selected: null, samples: [], timer: null, lists: { active: [], waiting: [], stopped: [] },
};

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "className") node.className = value;
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

// -- JSON-RPC over the WebSocket --------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/jsonrpc`);
  state.socket = socket;
  socket.onopen = () => { refresh(); };
  socket.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.method) { refresh(); return; }     // an aria2 notification: redraw now
    const waiter = state.pending.get(data.id);
    if (!waiter) return;
    state.pending.delete(data.id);
    if (data.error) waiter.reject(new Error(data.error.message)); else waiter.resolve(data.result);
  };
  socket.onclose = () => {
    $("global-stat").textContent = "disconnected; retrying…";
    for (const waiter of state.pending.values()) waiter.reject(new Error("disconnected"));
    state.pending.clear();
    setTimeout(connect, 1000);
  };
}

function rpc(method, ...params) {
  return new Promise((resolve, reject) => {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
      reject(new Error("not connected")); return;
    }
    const id = state.nextId++;
    state.pending.set(id, { resolve, reject });
    const token = method.startsWith("system.") ? [] : [`token:${state.secret}`];
    state.socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, params: [...token, ...params] }));
  });
}

function multicall(calls) {
  const token = `token:${state.secret}`;
  return rpc("system.multicall", calls.map(([methodName, ...params]) =>
    ({ methodName, params: [token, ...params] })));
}

function unwrap(answer) {
  if (Array.isArray(answer)) return answer[0];
  throw new Error(answer.message);
}

// -- the secret ---------------------------------------------------------------------------

function askSecret(message) {
  $("secret-error").textContent = message || "";
  const dialog = $("secret-dialog");
  if (!dialog.open) dialog.showModal();
  $("secret-input").focus();
}

$("secret-form").addEventListener("submit", () => {
  state.secret = $("secret-input").value;
  localStorage.setItem("segdl.secret", state.secret);
  refresh();
});

$("forget-secret").addEventListener("click", () => {
  localStorage.removeItem("segdl.secret");
  state.secret = null;
  askSecret();
});

// -- polling and drawing ------------------------------------------------------------------

async function refresh() {
  clearTimeout(state.timer);
  state.timer = setTimeout(refresh, POLL_MS);
  if (!state.secret) { askSecret(); return; }
  let answers;
  try {
    answers = await multicall([
      ["aria2.getGlobalStat"], ["aria2.tellActive", KEYS], ["aria2.tellWaiting", 0, 1000, KEYS],
      ["aria2.tellStopped", 0, 1000, KEYS], ["aria2.getGlobalOption"],
    ]);
  } catch (error) {
    return;
  }
  if (!Array.isArray(answers[0])) {
    if (answers[0].message === "Unauthorized") askSecret("That secret was refused.");
    return;
  }
  const [stat, active, waiting, stopped, options] = answers.map(unwrap);
  state.lists = { active, waiting, stopped };
  showStat(stat, options);
  sample(Number(stat.downloadSpeed));
  drawList("active", active);
  drawList("waiting", waiting);
  drawList("stopped", stopped);
  await drawDetail();
}

function human(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(bytes), unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function eta(item) {
  const left = Number(item.totalLength) - Number(item.completedLength);
  const speed = Number(item.downloadSpeed);
  if (item.status !== "active" || !speed || !Number(item.totalLength)) return "";
  const seconds = Math.round(left / speed);
  if (seconds >= 3600) return `${Math.floor(seconds / 3600)}h${Math.floor(seconds % 3600 / 60)}m`;
  if (seconds >= 60) return `${Math.floor(seconds / 60)}m${seconds % 60}s`;
  return `${seconds}s`;
}

function nameOf(item) {
  const path = item.files && item.files[0] && item.files[0].path;
  if (path) return path.split("/").pop();
  const uri = item.files && item.files[0] && item.files[0].uris[0];
  return uri ? uri.uri.split("?")[0].split("/").pop() || uri.uri : item.gid;
}

function showStat(stat, options) {
  $("global-stat").textContent = `↓ ${human(stat.downloadSpeed)}/s · ${stat.numActive} active · ` +
    `${stat.numWaiting} waiting · ${stat.numStopped} stopped`;
  for (const [id, key] of [["concurrency", "max-concurrent-downloads"],
                           ["global-limit", "max-overall-download-limit"]]) {
    const input = $(id);
    if (document.activeElement !== input) input.value = options[key];
  }
}

function actionButton(label, action, gid) {
  return el("button", { type: "button", textContent: label, dataset: { action, gid } });
}

function actionsFor(kind, item) {
  const gid = item.gid;
  if (kind === "active") return [actionButton("pause", "pause", gid), actionButton("remove", "remove", gid)];
  if (kind === "waiting") {
    const first = item.status === "paused" ? actionButton("resume", "unpause", gid)
                                           : actionButton("pause", "pause", gid);
    return [first, actionButton("↑", "up", gid), actionButton("↓", "down", gid),
            actionButton("remove", "remove", gid)];
  }
  const buttons = [];
  if (item.status !== "complete") buttons.push(actionButton("retry", "retry", gid));
  buttons.push(actionButton("clear", "clear", gid));
  return buttons;
}

function drawList(kind, items) {
  const body = $(`${kind}-list`);
  $(`${kind}-count`).textContent = `(${items.length})`;
  const rows = items.map((item) => {
    const total = Number(item.totalLength), done = Number(item.completedLength);
    const bar = el("div", { className: "bar" }, el("div"));
    bar.firstChild.style.width = total ? `${(100 * done / total).toFixed(1)}%` : "0";
    const status = item.status === "error" ? `error: ${item.errorMessage}` : item.status;
    const row = el("tr", { dataset: { gid: item.gid, status: item.status } },
      el("td", { className: "name", textContent: nameOf(item), title: nameOf(item) }),
      el("td", {}, bar),
      el("td", { className: "num", textContent: total ? `${human(done)} / ${human(total)}` : human(done) }),
      el("td", { className: "num", textContent: item.status === "active" ? `${human(item.downloadSpeed)}/s` : "" }),
      el("td", { className: "num", textContent: eta(item) }),
      el("td", { className: "num", textContent: item.status === "active" ? `${item.connections} conn` : "" }),
      el("td", { className: `status ${item.status}`, textContent: status }),
      el("td", { className: "actions" }, ...actionsFor(kind, item)));
    if (item.gid === state.selected) row.classList.add("selected");
    return row;
  });
  if (!rows.length) rows.push(el("tr", { className: "empty" }, el("td", { textContent: "none" })));
  body.replaceChildren(...rows);
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (button) {
    event.stopPropagation();
    const { action, gid } = button.dataset;
    const calls = {
      pause: ["aria2.pause", gid], unpause: ["aria2.unpause", gid],
      remove: ["aria2.forceRemove", gid], retry: ["segdl.retry", gid],
      clear: ["aria2.removeDownloadResult", gid],
      up: ["aria2.changePosition", gid, -1, "POS_CUR"], down: ["aria2.changePosition", gid, 1, "POS_CUR"],
    };
    try { await rpc(...calls[action]); } catch (error) { $("add-error").textContent = error.message; }
    refresh();
    return;
  }
  const row = event.target.closest("tr[data-gid]");
  if (row) { state.selected = row.dataset.gid; refresh(); }
});

// -- adding, global options -----------------------------------------------------------

$("add-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const lines = $("urls").value.split("\n").map((line) => line.trim()).filter(Boolean);
  if (!lines.length) return;
  const options = {};
  for (const [id, key] of [["opt-dir", "dir"], ["opt-out", "out"], ["opt-split", "split"],
                           ["opt-limit", "max-download-limit"], ["opt-checksum", "checksum"],
                           ["opt-header", "header"]]) {
    const value = $(id).value.trim();
    if (value) options[key] = value;
  }
  if ($("opt-paused").checked) options.pause = "true";
  if (options.out && lines.length > 1) { $("add-error").textContent = "out is for one URL"; return; }
  try {
    const answers = await multicall(lines.map((line) => ["aria2.addUri", line.split(/\s+/), options]));
    const failed = answers.filter((answer) => !Array.isArray(answer));
    $("add-error").textContent = failed.map((answer) => answer.message).join("; ");
    if (!failed.length) $("urls").value = "";
    const added = answers.filter(Array.isArray).map((answer) => answer[0]);
    if (added.length) state.selected = added[added.length - 1];
  } catch (error) {
    $("add-error").textContent = error.message;
  }
  refresh();
});

$("global-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await rpc("aria2.changeGlobalOption", {
      "max-concurrent-downloads": $("concurrency").value,
      "max-overall-download-limit": $("global-limit").value || "0",
    });
    $("add-error").textContent = "";
  } catch (error) { $("add-error").textContent = error.message; }
  document.activeElement.blur();
  refresh();
});

$("purge-button").addEventListener("click", async () => {
  await rpc("aria2.purgeDownloadResult");
  refresh();
});

// -- the chart and the segment map ------------------------------------------------------

function sample(speed) {
  state.samples.push(speed);
  if (state.samples.length > SAMPLES) state.samples.shift();
  drawChart();
}

function drawChart() {
  const canvas = $("chart"), ctx = canvas.getContext("2d");
  const { width, height } = canvas, pad = 22;
  ctx.clearRect(0, 0, width, height);
  const peak = Math.max(1024, ...state.samples);
  ctx.strokeStyle = "#d8dbe0"; ctx.fillStyle = "#6a737d"; ctx.font = "11px sans-serif";
  for (const fraction of [0.5, 1]) {
    const y = height - pad - fraction * (height - 2 * pad);
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(width, y); ctx.stroke();
    ctx.fillText(`${human(peak * fraction)}/s`, 4, y - 3);
  }
  const step = width / (SAMPLES - 1), first = SAMPLES - state.samples.length;
  const point = (value, n) => [(first + n) * step, height - pad - value / peak * (height - 2 * pad)];
  if (state.samples.length < 1) return;
  ctx.beginPath();
  state.samples.forEach((value, n) => { const [x, y] = point(value, n); if (n) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
  ctx.strokeStyle = "#1c7ed6"; ctx.lineWidth = 2; ctx.stroke();
  ctx.lineTo(width, height - pad); ctx.lineTo(first * step, height - pad); ctx.closePath();
  ctx.fillStyle = "rgba(28, 126, 214, 0.15)"; ctx.fill();
  canvas.dataset.samples = String(state.samples.length);
  canvas.dataset.peak = String(Math.max(...state.samples));
}

async function drawDetail() {
  const section = $("detail-section");
  if (!state.selected) { section.hidden = true; return; }
  let detail;
  try { detail = await rpc("segdl.tellDetail", state.selected); } catch (error) {
    state.selected = null; section.hidden = true; return;
  }
  section.hidden = false;
  const all = [...state.lists.active, ...state.lists.waiting, ...state.lists.stopped];
  const item = all.find((entry) => entry.gid === detail.gid);
  $("detail-name").textContent = item ? nameOf(item) : detail.gid;
  const canvas = $("segment-map"), ctx = canvas.getContext("2d");
  const { width, height } = canvas, total = detail.totalLength;
  ctx.fillStyle = "#e9ecef"; ctx.fillRect(0, 0, width, height);
  let doneBytes = 0;
  if (total) {
    const x = (offset) => offset / total * width;
    ctx.fillStyle = "#2f9e44";
    for (const [start, end] of detail.done) {
      doneBytes += end - start;
      ctx.fillRect(x(start), 8, Math.max(1, x(end) - x(start)), height - 16);
    }
    for (const [position, end] of detail.connections) {
      ctx.fillStyle = "rgba(28, 126, 214, 0.25)";
      ctx.fillRect(x(position), 8, Math.max(1, x(end) - x(position)), height - 16);
      ctx.fillStyle = "#1c7ed6";
      ctx.fillRect(x(position) - 1, 0, 3, height);
    }
  }
  canvas.dataset.ranges = String(detail.done.length);
  canvas.dataset.connections = String(detail.connections.length);
  $("segment-legend").textContent = total
    ? `${human(doneBytes)} of ${human(total)} in ${detail.done.length} range(s); ` +
      `${detail.connections.length} connection(s) (blue: each one's position and what it has left)`
    : "size not known yet";
  $("notices").replaceChildren(...detail.notices.slice(-12).map((notice) =>
    el("li", { textContent: `${new Date(notice.time * 1000).toLocaleTimeString()} ${notice.kind}: ${notice.message}` })));
}

connect();
