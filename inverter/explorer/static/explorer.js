"use strict";
// The explorer page. Names inside a model are untrusted: they are only ever set as textContent.
const BOOT = JSON.parse(document.getElementById("boot").textContent);
const SERVER = BOOT.mode === "server";
const $ = (id) => document.getElementById(id);
const SVGNS = "http://www.w3.org/2000/svg";
const OPS = {Conv: "#8ecae6", ConvTranspose: "#8ecae6", Relu: "#ffb4a2", LeakyRelu: "#ffb4a2", PRelu: "#ffb4a2",
  Clip: "#ffb4a2", MaxPool: "#b5e48c", AveragePool: "#b5e48c", GlobalAveragePool: "#b5e48c",
  BatchNormalization: "#e0c3fc", Add: "#ffd166", Mul: "#ffd166", Concat: "#ffd166", Gemm: "#f4a261",
  MatMul: "#f4a261", Flatten: "#d9d9d9", Reshape: "#d9d9d9", Sigmoid: "#ffafcc", Softmax: "#ffafcc", LRN: "#cdb4db"};
let model = BOOT.models[0];
let selected = null;
let token = 0;  // the run the main panel shows; older streams stop updating it
const strip = [];

function opColour(op) {
  if (OPS[op]) return OPS[op];
  let h = 0;
  for (const c of op) h = (h * 31 + c.charCodeAt(0)) % 360;
  return `hsl(${h},55%,82%)`;
}
function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function html(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
const clip = (s, k) => (s.length > k ? s.slice(0, k - 1) + "…" : s);
const label = (n) => (n.aliases.length ? n.aliases[0] : n.name);
const shapeText = (n) => (n.shape ? n.shape.slice(1).join("×") : "?");
const rfText = (n) => (n.receptive_field === null ? "the whole input" : `${n.receptive_field} px`);
const fmt = (v, d) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
const nodeById = (m, id) => m.nodes[id];

function details(n) {
  const box = html("div", undefined, "kv");
  for (const [k, v] of [["name", n.name], ["aliases", n.aliases.join(", ") || "(none)"], ["op", n.op],
    ["shape", n.shape ? n.shape.join("×") : "?"], ["receptive field", rfText(n)]]) {
    box.append(html("b", k), html("span", v));
  }
  return box;
}

function drawGraph() {
  const g = $("graph");
  const L = model.layout;
  g.replaceChildren();
  g.setAttribute("width", L.width + 20);
  g.setAttribute("height", L.height + 20);
  g.setAttribute("viewBox", `-10 -10 ${L.width + 20} ${L.height + 20}`);
  const marker = svg("marker", {id: "arrow", markerWidth: 8, markerHeight: 8, refX: 6, refY: 3, orient: "auto"});
  marker.append(svg("path", {d: "M0,0 L6,3 L0,6 z", fill: "#7a8796"}));
  const defs = svg("defs");
  defs.append(marker);
  g.append(defs);
  for (const e of L.edges) {
    const p = e.points;
    let d = `M${p[0][0]},${p[0][1]}`;
    for (let i = 1; i + 2 < p.length; i += 3) d += ` C${p[i]} ${p[i + 1]} ${p[i + 2]}`;
    if (e.end) d += ` L${e.end[0]},${e.end[1]}`;
    g.append(svg("path", {d, class: "edge", "marker-end": "url(#arrow)"}));
  }
  const [ix, iy, iw, ih] = L.input;
  g.append(svg("ellipse", {cx: ix, cy: iy, rx: iw / 2, ry: ih / 2, fill: "#eef", stroke: "#34495e"}));
  g.append(svg("text", {x: ix, y: iy + 4, "text-anchor": "middle"},
    clip(`${model.input.name} ${model.input.size.join("×")}`, 24)));
  for (const n of model.nodes) {
    const [cx, cy, w, h] = L.nodes[n.id];
    const node = svg("g", {class: "node" + (n.highlight ? " hl" : ""), id: `node-${n.id}`, "data-name": n.name});
    node.append(svg("rect", {x: cx - w / 2, y: cy - h / 2, width: w, height: h, fill: opColour(n.op)}));
    node.append(svg("text", {x: cx - w / 2 + 6, y: cy - 3, class: "name"}, clip(label(n), 22)));
    node.append(svg("text", {x: cx - w / 2 + 6, y: cy + 12}, clip(`${n.op} ${shapeText(n)}`, 24)));
    node.addEventListener("mouseenter", (ev) => showTip(n, ev));
    node.addEventListener("mousemove", moveTip);
    node.addEventListener("mouseleave", () => { $("tip").hidden = true; });
    node.addEventListener("click", () => select(n));
    g.append(node);
  }
  for (const r of BOOT.runs || []) {
    const e = $(`node-${model.nodes.findIndex((n) => n.name === r.node)}`);
    if (e && r.model === model.id) e.classList.add("done");
  }
  const names = $("names");
  names.replaceChildren();
  for (const n of model.nodes) for (const a of [...n.aliases, n.name]) names.append(new Option(a));
}

function showTip(n, ev) {
  const tip = $("tip");
  tip.replaceChildren(details(n));
  tip.hidden = false;
  moveTip(ev);
}
function moveTip(ev) {
  const tip = $("tip");
  tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - 470) + "px";
  tip.style.top = ev.clientY + 14 + "px";
}

function mark(id, cls) {
  for (const e of document.querySelectorAll(`#graph .${cls}`)) e.classList.remove(cls);
  const e = $(`node-${id}`);
  if (e) {
    e.classList.add(cls);
    e.scrollIntoView({block: "center", inline: "center"});
  }
}

async function search() {
  const q = $("search").value.trim();
  const msg = $("search-msg");
  msg.textContent = "";
  if (!q) return;
  if (SERVER) {
    const r = await fetch(`/api/models/${model.id}/resolve?name=${encodeURIComponent(q)}`);
    const j = await r.json();
    if (!r.ok) { msg.textContent = j.detail; return; }
    mark(j.id, "found");
    showInfo(nodeById(model, j.id));
    return;
  }
  const hit = model.nodes.find((n) => n.name === q || n.aliases.includes(q))
    || model.nodes.find((n) => [n.name, ...n.aliases].some((a) => a.toLowerCase().includes(q.toLowerCase())));
  if (!hit) { msg.textContent = `no node is called ${q}`; return; }
  mark(hit.id, "found");
  showInfo(hit);
}

function showInfo(n) {
  const info = $("info");
  info.replaceChildren(html("h3", label(n)), details(n));
}

function settings() {
  const v = (id) => $(id).value.trim();
  return {photo: v("photo"), preset: v("preset"), iterations: v("iterations"), lambda_tv: v("lambda_tv"),
    lambda_alpha: v("lambda_alpha"), seed: v("seed")};
}

async function startRun(modelId, nodeName, onProgress, onState) {
  const r = await fetch("/api/runs", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({model: modelId, node: nodeName, ...settings()})});
  const j = await r.json();
  if (!r.ok) throw new Error(j.detail);
  if (j.state === "done") return j.result;
  return new Promise((resolve, reject) => {
    const es = new EventSource(j.events);
    es.addEventListener("state", (ev) => onState && onState(JSON.parse(ev.data).state));
    es.addEventListener("progress", (ev) => onProgress(JSON.parse(ev.data)));
    es.addEventListener("done", (ev) => { es.close(); resolve(JSON.parse(ev.data).result); });
    es.addEventListener("error", (ev) => {
      es.close();
      reject(new Error(ev.data ? JSON.parse(ev.data).message : "the connection to the server was lost"));
    });
  });
}

function drawLoss(values, total) {
  const g = $("loss");
  g.replaceChildren();
  const finite = values.filter((v) => v > 0 && Number.isFinite(v));
  if (finite.length < 2) return;
  const W = 360, H = 110, lo = Math.log10(Math.min(...finite)), hi = Math.log10(Math.max(...finite));
  const n = Math.max(total || values.length, values.length);
  const pts = values.map((v, i) => `${(4 + (i / Math.max(n - 1, 1)) * (W - 8)).toFixed(1)},` +
    `${(6 + (1 - (Math.log10(Math.max(v, 1e-30)) - lo) / Math.max(hi - lo, 1e-9)) * (H - 22)).toFixed(1)}`);
  g.append(svg("polyline", {points: pts.join(" ")}));
  g.append(svg("text", {x: 4, y: H - 4}, `loss ${values[values.length - 1].toPrecision(4)} (log scale), ` +
    `${values.length} of ${n}`));
}

function showResult(res) {
  const run = $("run");
  run.dataset.key = res.key;
  $("photo-img").src = res.images ? res.images.original : `/api/runs/${res.key}/original.png`;
  $("current-img").src = res.images ? res.images.reconstruction : `/api/runs/${res.key}/reconstruction.png`;
  $("current-cap").textContent = `reconstruction (${res.stopped})`;
  $("result-feature-error").textContent = fmt(res.feature_error, 4);
  $("result-rel-flat").textContent = fmt(res.rel_flat, 4);
  $("result-ssim").textContent = fmt(res.ssim, 3);
  $("result-psnr").textContent = `${fmt(res.psnr, 2)} dB`;
  $("result-iterations").textContent = `${res.iterations} in ${fmt(res.seconds, 1)} s`;
  $("metrics").hidden = false;
  drawLoss(res.loss, res.loss.length);
  $("run-state").textContent = "done";
  run.classList.add("finished");
  const e = $(`node-${model.nodes.findIndex((n) => n.name === res.node)}`);
  if (e && res.model === model.id) e.classList.add("done");
}

async function select(n) {
  selected = n;
  mark(n.id, "selected");
  showInfo(n);
  if (!SERVER) {  // a static export shows the runs it was written with
    const made = (BOOT.runs || []).filter((r) => r.node === n.name);
    $("run").hidden = !made.length;
    if (made.length) {
      $("run-title").textContent = `${label(n)} · ${model.name} (${made.length} run${made.length > 1 ? "s" : ""} saved)`;
      showResult(made[made.length - 1]);
    }
    return;
  }
  const mine = ++token;
  const run = $("run");
  run.hidden = false;
  run.classList.remove("finished");
  delete run.dataset.key;
  $("metrics").hidden = true;
  $("run-title").textContent = `${label(n)} · ${model.name}`;
  $("run-state").className = "";
  $("run-state").textContent = "starting";
  $("photo-img").src = `/api/photos/${settings().photo}.png`;
  $("current-img").removeAttribute("src");
  $("current-cap").textContent = "current image";
  const losses = [];
  const total = Number(settings().iterations) || undefined;
  try {
    const res = await startRun(model.id, n.name, (p) => {
      if (mine !== token) return;
      losses.push(p.loss);
      $("run-state").textContent = `iteration ${p.iteration}, loss ${p.loss.toPrecision(4)}`;
      if (p.image) $("current-img").src = p.image;
      if (p.iteration % 5 === 0 || p.image) drawLoss(losses, total);
    }, (state) => { if (mine === token) $("run-state").textContent = state; });
    if (mine === token) showResult(res);
  } catch (err) {
    if (mine === token) {
      $("run-state").className = "error";
      $("run-state").textContent = err.message;
    }
  }
}

// ---- side by side ----------------------------------------------------------------------------
function renderStrip() {
  const box = $("strip");
  box.replaceChildren();
  for (const item of strip) {
    const cell = html("div", undefined, "cell");
    const fig = html("figure");
    item.img = html("img");
    item.line = html("div", item.result ? stripLine(item.result) : "not run", "m");
    if (item.result) item.img.src = `/api/runs/${item.result.key}/reconstruction.png`;
    fig.append(item.img, html("figcaption", `${clip(item.label, 18)} · ${clip(item.modelName, 24)}`));
    cell.append(fig, item.line);
    box.append(cell);
  }
}
const stripLine = (r) => `err ${fmt(r.feature_error, 3)} · flat ${fmt(r.rel_flat, 2)} · SSIM ${fmt(r.ssim, 2)}`;

function addToStrip(m, n) {
  if (strip.some((s) => s.model === m.id && s.node === n.name)) return;
  strip.push({model: m.id, modelName: m.name, node: n.name, label: label(n), order: BOOT.models.indexOf(m) * 1e6 + n.id});
  strip.sort((a, b) => a.order - b.order);  // per model, shallow to deep (the graph's order)
  renderStrip();
}

async function sameNodeEverywhere() {
  const msg = $("strip-msg");
  msg.textContent = "";
  if (!selected) { msg.textContent = "select a node first"; return; }
  const name = label(selected);
  for (const m of BOOT.models) {
    const r = await fetch(`/api/models/${m.id}/resolve?name=${encodeURIComponent(name)}`);
    const j = await r.json();
    if (r.ok) addToStrip(m, nodeById(m, j.id));
    else msg.textContent += `${m.name}: ${j.detail} `;
  }
}

async function runStrip() {
  for (const item of strip) {
    if (item.result) continue;
    item.line.textContent = "running";
    try {
      item.result = await startRun(item.model, item.node, (p) => {
        if (p.image) item.img.src = p.image;
        item.line.textContent = `iteration ${p.iteration}`;
      });
      item.img.src = `/api/runs/${item.result.key}/reconstruction.png`;
      item.line.textContent = stripLine(item.result);
    } catch (err) {
      item.line.textContent = err.message;
    }
  }
}

// ---- settings, photos, models -----------------------------------------------------------------
function applyPreset() {
  const p = BOOT.presets.find((x) => x.name === $("preset").value);
  if (!p) return;
  $("iterations").value = p.iterations;
  $("lambda_tv").value = p.lambda_tv;
  $("lambda_alpha").value = p.lambda_alpha;
  $("seed").value = p.seed;
}

async function upload() {
  const file = $("upload").files[0];
  if (!file) return;
  const msg = $("search-msg");
  if (file.size > BOOT.max_upload) { msg.textContent = `${file.name} is over the ${BOOT.max_upload >> 20} MB limit`; return; }
  const r = await fetch(`/api/photos?name=${encodeURIComponent(file.name)}`, {method: "POST", body: file});
  const j = await r.json();
  if (!r.ok) { msg.textContent = j.detail; return; }
  if (![...$("photo").options].some((o) => o.value === j.id)) $("photo").append(new Option(j.name, j.id));
  $("photo").value = j.id;
  msg.textContent = `uploaded ${j.name}`;
}

async function openNetron(ev) {
  ev.preventDefault();
  const a = $("netron");
  const r = await fetch(`/api/models/${model.id}/netron`);
  const j = await r.json();
  if (!r.ok) { a.textContent = j.detail; return; }
  a.href = j.url;
  window.open(j.url, "_blank", "noopener");
}

function init() {
  document.body.classList.add(SERVER ? "server" : "static");
  for (const m of BOOT.models) $("model").append(new Option(m.name, m.id));
  $("model").hidden = BOOT.models.length < 2;
  $("model").addEventListener("change", () => {
    model = BOOT.models.find((m) => m.id === $("model").value);
    drawGraph();
  });
  $("search").addEventListener("keydown", (ev) => { if (ev.key === "Enter") search(); });
  $("search").addEventListener("change", search);
  if (SERVER) {
    for (const p of BOOT.photos) $("photo").append(new Option(p.name, p.id));
    for (const p of BOOT.presets) $("preset").append(new Option(p.name, p.name));
    for (const p of BOOT.presets) $("preset").options[BOOT.presets.indexOf(p)].title = p.label;
    $("preset").addEventListener("change", applyPreset);
    applyPreset();
    $("upload").addEventListener("change", upload);
    $("strip-add").addEventListener("click", () => selected && addToStrip(model, selected));
    $("strip-models").addEventListener("click", sameNodeEverywhere);
    $("strip-run").addEventListener("click", runStrip);
    $("strip-clear").addEventListener("click", () => { strip.length = 0; renderStrip(); });
    if (BOOT.netron === false) $("netron").textContent = "Netron is not installed (pip install netron)";
    else $("netron").addEventListener("click", openNetron);
  }
  drawGraph();
}
init();
