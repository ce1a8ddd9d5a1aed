"use strict";
// The page of `vaelab serve`: plain JS over the server's JSON API, no dependencies, so it works offline.
// One current latent point `state.z` drives the decoded image; the plane, the sliders, the gallery,
// the interpolation strip and the drawing canvas all just move it.

const COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#8c8c8c"];
const SLIDER_RANGE = 4; // sliders span +-4 prior standard deviations, or as far as the test digits lie
const SLIDERS_SHOWN = 8; // beyond this many dimensions, the rest hide behind "Show all"
const PLANE_PAD = { left: 36, right: 12, top: 12, bottom: 30 };
const $ = (id) => document.getElementById(id);

const state = {
  meta: null, // /api/runs
  run: null, // the run being explored
  z: [],
  selected: null, // the test digit "Reset" returns to
  gallery: [],
  plane: null, // {dims, x, y, labels, bounds} of the run shown
  planeImage: null, // the scatter, drawn once per plane and reused under the moving marker
  showAll: false,
  a: null,
  b: null,
  drawnMu: null,
  hasInk: false,
};

// --- talking to the server ----------------------------------------------------------------------

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

const runPath = (what) => `/api/runs/${encodeURIComponent(state.run.name)}/${what}`;

let toastTimer = null;
function showError(error) {
  const toast = $("toast");
  toast.textContent = String(error.message || error);
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.hidden = true; }, 6000);
}

// Live requests: at most one in flight; input that arrives meanwhile is sent once the reply is in,
// so dragging never queues up stale work and the last position always gets decoded.
function liveRequest(send) {
  let busy = false;
  let again = false;
  return function request() {
    if (busy) { again = true; return; }
    busy = true;
    again = false;
    send().catch(showError).finally(() => {
      busy = false;
      if (again) request();
    });
  };
}

// --- drawing images -------------------------------------------------------------------------------

const scratch = document.createElement("canvas");
const MAX_UPLOAD_BYTES = 3 * 1024 * 1024; // base64 makes it 4/3 larger: under the server's 4 MiB request limit

// The data's image size and channels (28x28 grey until /api/runs says otherwise).
const imageShape = () => (state.meta && state.meta.image) || { channels: 1, height: 28, width: 28 };

function drawPixels(canvas, pixels) {
  const { channels, height, width } = imageShape();
  scratch.width = width;
  scratch.height = height;
  const context = scratch.getContext("2d");
  const image = context.createImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < 3; c++) image.data[4 * i + c] = pixels[channels === 1 ? i : 3 * i + c];
    image.data[4 * i + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  const target = canvas.getContext("2d");
  target.imageSmoothingEnabled = canvas.width % width !== 0; // whole-pixel scales stay crisp
  target.drawImage(scratch, 0, 0, canvas.width, canvas.height);
}

// "test digit #3 (a 7)", "test image #3 (cat)" or, without labels, "test image #3".
function describeTest(index, label) {
  const meta = state.meta || {};
  if (meta.labelled === false || label < 0) return `test image #${index}`;
  if (meta.class_names) return `test image #${index} (${meta.class_names[label]})`;
  return `test digit #${index} (a ${label})`;
}

function digitCanvas(pixels, title) {
  const canvas = document.createElement("canvas");
  canvas.width = imageShape().width;
  canvas.height = imageShape().height;
  canvas.title = title;
  drawPixels(canvas, pixels);
  return canvas;
}

function bump(element, key) {
  element.dataset[key] = String(Number(element.dataset[key] || 0) + 1);
}

// --- the current point ----------------------------------------------------------------------------

const requestDecode = liveRequest(async () => {
  const run = state.run.name;
  const data = await api(runPath("decode"), { z: state.z.map((v) => Math.round(v * 1e4) / 1e4) });
  if (run !== state.run.name) return;
  drawPixels($("decoded"), data.pixels);
  $("timing").textContent = `decoded on the server in ${data.decode_ms.toFixed(2)} ms`;
  bump($("decoded"), "decodes");
});

function setZ(z) {
  state.z = z.map(Number);
  updateSliders();
  drawPlane();
  requestDecode();
}

// --- runs ------------------------------------------------------------------------------------------

function buildRunButtons() {
  const nav = $("runs");
  nav.replaceChildren();
  nav.hidden = state.meta.runs.length < 2;
  for (const run of state.meta.runs) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = run.label || `latent ${run.latent_dim}`;
    button.dataset.run = run.name;
    button.addEventListener("click", () => switchRun(run.name).catch(showError));
    nav.append(button);
  }
}

async function switchRun(name) {
  state.run = state.meta.runs.find((run) => run.name === name);
  for (const button of $("runs").children) button.classList.toggle("active", button.dataset.run === name);
  const run = state.run;
  // Built from nodes: a run's name is a directory name, never markup.
  const bold = (text) => { const b = document.createElement("b"); b.textContent = text; return b; };
  const parts = [bold(run.name), ` · ${run.arch} · ${run.likelihood} · ${run.epochs} epochs`];
  if (run.test_loss !== null) parts.push(" · test −ELBO ", bold(run.test_loss.toFixed(1)), " nats");
  $("run-info").replaceChildren(...parts);
  state.z = new Array(run.latent_dim).fill(0);
  buildSliders();
  await loadPlane(0, Math.min(1, run.latent_dim - 1));
  await Promise.all([selectDigit(state.selected), refreshInterpolation(), state.hasInk ? encodeDrawing() : null]);
  document.body.dataset.run = name;
}

// --- the plane ---------------------------------------------------------------------------------------

async function loadPlane(x, y) {
  const run = state.run;
  const canvas = $("plane");
  const twoD = run.latent_dim === 2;
  $("plane-title").textContent = twoD ? "Latent plane" : "Latent slice";
  $("plane-axes").hidden = run.latent_dim <= 2;
  if (run.latent_dim < 2) {
    state.plane = null;
    canvas.hidden = true;
    $("legend").hidden = true;
    $("plane-hint").textContent = "A 1-D latent space has no plane: use the slider.";
    return;
  }
  canvas.hidden = false;
  $("legend").hidden = false;
  $("plane-hint").textContent = twoD
    ? "Click or drag anywhere: that point is decoded live. Dots: test digits' posterior means."
    : `Drag to set z${x + 1} and z${y + 1}; the other coordinates keep their values. Dots: test posterior means on these two dimensions.`;
  fillAxisChoices(x, y);
  state.plane = await api(runPath(`plane?x=${x}&y=${y}`));
  state.planeImage = renderScatter(state.plane, canvas);
  drawPlane();
}

function fillAxisChoices(x, y) {
  for (const [id, chosen] of [["axis-x", x], ["axis-y", y]]) {
    const select = $(id);
    select.replaceChildren();
    for (let i = 0; i < state.run.latent_dim; i++) select.add(new Option(`z${i + 1}`, String(i), false, i === chosen));
  }
}

function onAxisChange() {
  const x = Number($("axis-x").value);
  const y = Number($("axis-y").value);
  if (x === y) { showError("choose two different dimensions for the slice"); return; }
  loadPlane(x, y).catch(showError);
}

// Square bounds (equal units on both axes, so distances look like distances) around the data.
function planeGeometry(plane, canvas) {
  const [x0, x1, y0, y1] = plane.bounds;
  const half = Math.max(x1 - x0, y1 - y0) / 2;
  const cx = (x0 + x1) / 2;
  const cy = (y0 + y1) / 2;
  const size = Math.min(canvas.width - PLANE_PAD.left - PLANE_PAD.right, canvas.height - PLANE_PAD.top - PLANE_PAD.bottom);
  const scale = size / (2 * half);
  return {
    xmin: cx - half, xmax: cx + half, ymin: cy - half, ymax: cy + half, size,
    toPx: (x, y) => [PLANE_PAD.left + (x - (cx - half)) * scale, PLANE_PAD.top + ((cy + half) - y) * scale],
    toZ: (px, py) => [(px - PLANE_PAD.left) / scale + (cx - half), (cy + half) - (py - PLANE_PAD.top) / scale],
  };
}

function renderScatter(plane, canvas) {
  const image = document.createElement("canvas");
  image.width = canvas.width;
  image.height = canvas.height;
  const ctx = image.getContext("2d");
  const g = planeGeometry(plane, canvas);
  ctx.fillStyle = "#fbfbfd";
  ctx.fillRect(0, 0, image.width, image.height);
  const step = g.xmax - g.xmin > 12 ? 2 : 1;
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#8a90a0";
  for (let v = Math.ceil(g.xmin / step) * step; v <= g.xmax; v += step) {
    const [px] = g.toPx(v, 0);
    ctx.strokeStyle = v === 0 ? "#c9cdd8" : "#eceef3";
    ctx.beginPath(); ctx.moveTo(px, PLANE_PAD.top); ctx.lineTo(px, PLANE_PAD.top + g.size); ctx.stroke();
    ctx.textAlign = "center";
    ctx.fillText(String(v), px, PLANE_PAD.top + g.size + 14);
  }
  for (let v = Math.ceil(g.ymin / step) * step; v <= g.ymax; v += step) {
    const [, py] = g.toPx(0, v);
    ctx.strokeStyle = v === 0 ? "#c9cdd8" : "#eceef3";
    ctx.beginPath(); ctx.moveTo(PLANE_PAD.left, py); ctx.lineTo(PLANE_PAD.left + g.size, py); ctx.stroke();
    ctx.textAlign = "right";
    ctx.fillText(String(v), PLANE_PAD.left - 6, py + 4);
  }
  const [dx, dy] = plane.dims;
  ctx.fillStyle = "#5b6275";
  ctx.textAlign = "right";
  ctx.fillText(`z${dx + 1}`, PLANE_PAD.left + g.size, PLANE_PAD.top + g.size + 27);
  ctx.save();
  ctx.translate(11, PLANE_PAD.top + 14);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText(`z${dy + 1}`, 0, 0);
  ctx.restore();
  // The prior's 1- and 2-sigma circles: where a standard normal puts 39% and 86% of its mass in 2-D.
  const [ox, oy] = g.toPx(0, 0);
  const unit = g.toPx(1, 0)[0] - ox;
  ctx.strokeStyle = "#a9adbf";
  ctx.setLineDash([3, 4]);
  for (const r of [1, 2]) { ctx.beginPath(); ctx.arc(ox, oy, r * unit, 0, 2 * Math.PI); ctx.stroke(); }
  ctx.setLineDash([]);
  ctx.globalAlpha = 0.6;
  for (let i = 0; i < plane.x.length; i++) {
    const [px, py] = g.toPx(plane.x[i], plane.y[i]);
    ctx.fillStyle = plane.labels[i] < 0 ? "#6b7080" : COLORS[plane.labels[i] % COLORS.length];
    ctx.beginPath(); ctx.arc(px, py, 2, 0, 2 * Math.PI); ctx.fill();
  }
  ctx.globalAlpha = 1;
  return image;
}

function drawPlane() {
  const plane = state.plane;
  if (!plane || !state.planeImage) return;
  const canvas = $("plane");
  const ctx = canvas.getContext("2d");
  const g = planeGeometry(plane, canvas);
  ctx.drawImage(state.planeImage, 0, 0);
  const [dx, dy] = plane.dims;
  const [px, py] = g.toPx(state.z[dx], state.z[dy]);
  ctx.save();
  ctx.beginPath(); ctx.rect(PLANE_PAD.left, PLANE_PAD.top, g.size, g.size); ctx.clip();
  ctx.strokeStyle = "rgba(79, 70, 229, 0.35)";
  ctx.setLineDash([4, 4]);
  ctx.beginPath();
  ctx.moveTo(px, PLANE_PAD.top); ctx.lineTo(px, PLANE_PAD.top + g.size);
  ctx.moveTo(PLANE_PAD.left, py); ctx.lineTo(PLANE_PAD.left + g.size, py);
  ctx.stroke();
  ctx.setLineDash([]);
  ctx.fillStyle = "#ffffff";
  ctx.strokeStyle = "#4f46e5";
  ctx.lineWidth = 3;
  ctx.beginPath(); ctx.arc(px, py, 7, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
  ctx.restore();
}

function planePointer(event) {
  const canvas = $("plane");
  const g = planeGeometry(state.plane, canvas);
  const px = event.offsetX * canvas.width / canvas.clientWidth;
  const py = event.offsetY * canvas.height / canvas.clientHeight;
  const limit = state.run.z_limit;
  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo, -limit), hi, limit);
  const [x, y] = g.toZ(px, py);
  const z = state.z.slice();
  z[state.plane.dims[0]] = clamp(x, g.xmin, g.xmax);
  z[state.plane.dims[1]] = clamp(y, g.ymin, g.ymax);
  setZ(z);
}

function wirePlane() {
  const canvas = $("plane");
  let dragging = false;
  canvas.addEventListener("pointerdown", (event) => {
    if (!state.plane) return;
    dragging = true;
    canvas.setPointerCapture(event.pointerId);
    planePointer(event);
  });
  canvas.addEventListener("pointermove", (event) => { if (dragging) planePointer(event); });
  const stop = () => { dragging = false; };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  $("axis-x").addEventListener("change", onAxisChange);
  $("axis-y").addEventListener("change", onAxisChange);
}

function buildLegend() {
  const legend = $("legend");
  legend.replaceChildren();
  if (state.meta.labelled === false) return; // one colour, nothing to tell apart
  const names = state.meta.class_names || Array.from({ length: 10 }, (_, digit) => String(digit));
  names.slice(0, COLORS.length).forEach((name, label) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = COLORS[label];  // a CSSOM property, which the page's CSP allows; a style="" attribute it refuses
    item.append(swatch, name);
    legend.append(item);
  });
}

// --- sliders ------------------------------------------------------------------------------------------

function buildSliders() {
  const box = $("sliders");
  box.replaceChildren();
  const dims = state.run.latent_dim;
  const range = Math.min(state.run.z_limit, Math.max(SLIDER_RANGE, Math.ceil(state.run.mean_extent)));
  for (let i = 0; i < dims; i++) {
    const row = document.createElement("label");
    row.className = "slider";
    row.hidden = !state.showAll && i >= SLIDERS_SHOWN;
    row.innerHTML = `<span class="name">z${i + 1}</span>` +
      `<input type="range" min="${-range}" max="${range}" step="0.01" value="0" aria-label="z${i + 1}">` +
      `<span class="value">0.00</span>`;
    row.querySelector("input").addEventListener("input", (event) => {
      state.z[i] = Number(event.target.value);
      row.querySelector(".value").textContent = state.z[i].toFixed(2);
      drawPlane();
      requestDecode();
    });
    box.append(row);
  }
  const toggle = $("toggle-all");
  toggle.hidden = dims <= SLIDERS_SHOWN;
  toggle.textContent = state.showAll ? `Show first ${SLIDERS_SHOWN}` : `Show all ${dims}`;
}

function updateSliders() {
  const rows = $("sliders").children;
  for (let i = 0; i < rows.length; i++) {
    rows[i].querySelector("input").value = String(state.z[i]);
    rows[i].querySelector(".value").textContent = state.z[i].toFixed(2);
  }
}

function toggleAllSliders() {
  state.showAll = !state.showAll;
  buildSliders();
  updateSliders();
}

// --- test digits --------------------------------------------------------------------------------------

async function loadGallery() {
  state.gallery = (await api("/api/digits")).digits;
  const box = $("gallery");
  box.replaceChildren();
  for (const digit of state.gallery) {
    const canvas = digitCanvas(digit.pixels, describeTest(digit.index, digit.label));
    canvas.dataset.index = String(digit.index);
    canvas.addEventListener("click", () => selectDigit(digit.index).catch(showError));
    box.append(canvas);
  }
}

async function selectDigit(index) {
  const digit = await api(runPath(`digits/${index}`));
  state.selected = index;
  for (const canvas of $("gallery").children) canvas.classList.toggle("selected", canvas.dataset.index === String(index));
  $("reset").textContent = `Reset to ${describeTest(index, digit.label)}`;
  $("pick-index").value = String(index);
  setZ(digit.mu);
}

function onPickIndex(event) {
  event.preventDefault();
  const index = Number($("pick-index").value);
  const size = state.meta.test_size;
  if (!Number.isInteger(index) || index < 0 || index >= size) {
    showError(`a test index is a whole number from 0 to ${size - 1}`);
    return;
  }
  selectDigit(index).catch(showError);
}

async function prior() {
  const data = await api(runPath("sample"), {});
  setZ(data.z);
}

// --- interpolation -----------------------------------------------------------------------------------

async function refreshInterpolation() {
  const steps = Number($("steps").value);
  const data = await api(runPath("interpolate"), { a: state.a, b: state.b, steps });
  const strip = $("strip");
  strip.replaceChildren();
  data.images.forEach((pixels, k) => {
    const canvas = digitCanvas(pixels, `step ${k + 1} of ${steps}: click to explore`);
    canvas.addEventListener("click", () => setZ(data.z[k]));
    strip.append(canvas);
  });
  await Promise.all([drawEndpoint("end-a", state.a), drawEndpoint("end-b", state.b)]);
}

async function drawEndpoint(id, index) {
  const known = state.gallery.find((digit) => digit.index === index);
  const digit = known || await api(runPath(`digits/${index}`));
  drawPixels($(id), digit.pixels);
  $(id).title = describeTest(index, digit.label);
}

const requestInterpolation = liveRequest(refreshInterpolation);

function setEndpoint(which) {
  state[which] = state.selected;
  requestInterpolation();
}

// --- drawing ----------------------------------------------------------------------------------------

const encodeDrawing = async () => showEncoded(await api(runPath("encode"), { image: $("draw").toDataURL("image/png") }));

// The model input, its reconstruction and posterior: for a drawing and for an uploaded image alike.
function showEncoded(data) {
  drawPixels($("drawn-input"), data.input);
  drawPixels($("drawn-recon"), data.reconstruction);
  drawPosterior(data.mu, data.std);
  showPosteriorValues(data.mu, data.std);
  state.drawnMu = data.mu;
  $("explore-drawn").disabled = false;
  bump($("drawn-recon"), "encodes");
}

// Data that is not grey 28x28 digits: an uploaded image replaces the drawing canvas.
function wireUpload() {
  $("draw").hidden = true;
  $("clear").hidden = true;
  $("upload-box").hidden = false;
  $("draw-title").textContent = "Encode an image";
  $("gallery-title").textContent = "Test images";
  $("draw-hint").textContent = "Choose an image file: it is converted like the training images, then encoded.";
  $("upload").addEventListener("change", () => {
    const file = $("upload").files[0];
    if (!file) return;
    if (file.size > MAX_UPLOAD_BYTES) { showError(`${file.name} is larger than 3 MB`); return; }
    const reader = new FileReader();
    reader.addEventListener("load", () => {
      api(runPath("encode"), { image: reader.result }).then(showEncoded).catch(showError);
    });
    reader.readAsDataURL(file);
  });
  $("explore-drawn").addEventListener("click", () => { if (state.drawnMu) setZ(state.drawnMu); });
}
const requestEncode = liveRequest(encodeDrawing);

function clearDrawing() {
  const canvas = $("draw");
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (const id of ["drawn-input", "drawn-recon"]) {
    const target = $(id).getContext("2d");
    target.fillStyle = "#000";
    target.fillRect(0, 0, $(id).width, $(id).height);
  }
  state.hasInk = false;
  state.drawnMu = null;
  showPosteriorValues(null, null);
  $("explore-drawn").disabled = true;
  drawPosterior(null, null);
}

function wireDrawing() {
  const canvas = $("draw");
  const ctx = canvas.getContext("2d");
  let drawing = false;
  let last = null;
  const point = (event) => [event.offsetX * canvas.width / canvas.clientWidth, event.offsetY * canvas.height / canvas.clientHeight];
  const stroke = (from, to) => {
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 15;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(...from); ctx.lineTo(...to); ctx.stroke();
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    last = point(event);
    stroke(last, last);
    state.hasInk = true;
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const next = point(event);
    stroke(last, next);
    last = next;
    requestEncode();
  });
  const stop = () => {
    if (!drawing) return;
    drawing = false;
    requestEncode();
  };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  $("clear").addEventListener("click", clearDrawing);
  $("explore-drawn").addEventListener("click", () => { if (state.drawnMu) setZ(state.drawnMu); });
}

// A few dimensions fit as numbers too, which shows how small a confident posterior's spread is.
function showPosteriorValues(mu, std) {
  const box = $("posterior-values");
  box.replaceChildren();
  if (!mu || mu.length > 4) return;
  mu.forEach((m, i) => {
    const line = document.createElement("div");
    line.innerHTML = `<span>z${i + 1}</span> ${m >= 0 ? "&nbsp;" : "−"}${Math.abs(m).toFixed(2)} <span>±</span> ${std[i].toFixed(2)}`;
    box.append(line);
  });
}

// Posterior mean (dot) and +-1 std (bar) per dimension, over the prior's +-1 band.
function drawPosterior(mu, std) {
  const canvas = $("posterior");
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  const pad = { left: 30, right: 8, top: 10, bottom: 22 };
  ctx.clearRect(0, 0, w, h);
  const dims = state.run ? state.run.latent_dim : 2;
  let top = 3;
  if (mu) for (let i = 0; i < dims; i++) top = Math.max(top, Math.abs(mu[i]) + std[i]);
  top = Math.ceil(top);
  const y = (v) => pad.top + (top - v) / (2 * top) * (h - pad.top - pad.bottom);
  const plotWidth = w - pad.left - pad.right;
  const band = Math.min(plotWidth / dims, 72); // a few dimensions sit together in the middle
  const x = (i) => pad.left + (plotWidth - band * dims) / 2 + band * (i + 0.5);
  ctx.fillStyle = "#f0f1f6";
  ctx.fillRect(pad.left, y(1), w - pad.left - pad.right, y(-1) - y(1));
  ctx.font = "10.5px system-ui, sans-serif";
  ctx.fillStyle = "#8a90a0";
  ctx.textAlign = "right";
  for (const v of [-top, 0, top]) {
    ctx.fillText(String(v), pad.left - 6, y(v) + 3);
    ctx.strokeStyle = v === 0 ? "#c9cdd8" : "#eceef3";
    ctx.beginPath(); ctx.moveTo(pad.left, y(v)); ctx.lineTo(w - pad.right, y(v)); ctx.stroke();
  }
  ctx.textAlign = "center";
  const every = Math.ceil(dims / 16);
  for (let i = 0; i < dims; i += every) ctx.fillText(`z${i + 1}`, x(i), h - 5);
  if (!mu) return;
  const barWidth = Math.max(2, Math.min(10, band * 0.3));
  for (let i = 0; i < dims; i++) {
    ctx.strokeStyle = "rgba(79, 70, 229, 0.4)";
    ctx.lineWidth = barWidth;
    ctx.lineCap = "round";
    ctx.beginPath(); ctx.moveTo(x(i), y(mu[i] - std[i])); ctx.lineTo(x(i), y(mu[i] + std[i])); ctx.stroke();
    ctx.fillStyle = "#4f46e5";
    ctx.beginPath(); ctx.arc(x(i), y(mu[i]), Math.max(2.5, barWidth * 0.55), 0, 2 * Math.PI); ctx.fill();
  }
  ctx.lineWidth = 1;
}

// --- start -------------------------------------------------------------------------------------------

async function start() {
  state.meta = await api("/api/runs");
  await loadGallery();
  const firstOf = (label) => (state.gallery.find((d) => d.label === label) || state.gallery[0]).index;
  state.selected = state.gallery[0].index;
  state.a = firstOf(2);
  state.b = state.meta.labelled === false ? state.gallery[Math.min(1, state.gallery.length - 1)].index : firstOf(7);
  buildRunButtons();
  buildLegend();
  wirePlane();
  if (state.meta.drawable === false) wireUpload(); else wireDrawing();
  $("sample").addEventListener("click", () => prior().catch(showError));
  $("reset").addEventListener("click", () => selectDigit(state.selected).catch(showError));
  $("toggle-all").addEventListener("click", toggleAllSliders);
  $("pick-form").addEventListener("submit", onPickIndex);
  $("set-a").addEventListener("click", () => setEndpoint("a"));
  $("set-b").addEventListener("click", () => setEndpoint("b"));
  $("steps").addEventListener("input", () => {
    $("steps-value").textContent = $("steps").value;
    requestInterpolation();
  });
  $("pick-index").max = String(state.meta.test_size - 1);
  await switchRun(state.meta.runs[0].name);
  clearDrawing();
  document.body.dataset.ready = "1";
}

start().catch(showError);
