// genkeras latent explorer: plain JavaScript, no build step. Talks only to the REST API of the
// server that serves it (TF Serving's /v1/models/... plus /explorer/models.json for the names).
"use strict";

const $ = (id) => document.getElementById(id);
const SIDE = 28, PIXELS = SIDE * SIDE;
const CLASSIFIER = "mnist_classifier"; // the discriminative classifier, served for comparison
const S = {
  data: null, model: null, version: null, sigs: {}, latentDim: 0, conditional: false,
  zKey: "z", digits: [], codes: [], lo: [], hi: [], current: null, path: null,
  base: null, a: null, b: null, // {img: Float32Array, label: int, code: Float32Array|null, name}
  inflight: false, pending: false, decodes: 0,
};

// -- REST ----------------------------------------------------------------------------------------
function setStatus(text, ready) {
  $("status").textContent = text;
  document.body.dataset.ready = ready ? "1" : "0";
}

async function getJSON(url) {
  const response = await fetch(url);
  const doc = await response.json();
  if (!response.ok) throw new Error(doc.error || `${response.status} ${url}`);
  return doc;
}

async function predict(signature, inputs) {
  const url = `/v1/models/${encodeURIComponent(S.model)}/versions/${S.version}:predict`;
  const started = performance.now();
  const response = await fetch(url, {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({signature_name: signature, inputs}),
  });
  const doc = await response.json();
  if (!response.ok) throw new Error(doc.error || `HTTP ${response.status}`);
  let out = doc.outputs;
  const names = Object.keys(S.sigs[signature].outputs);
  if (names.length === 1 && (Array.isArray(out) || typeof out !== "object")) out = {[names[0]]: out};
  return {out, ms: performance.now() - started};
}

const has = (signature) => Object.prototype.hasOwnProperty.call(S.sigs, signature);
const round3 = (v) => Math.round(v * 1000) / 1000;

function nested(img) { // Float32Array(784) -> [28][28][1]
  const rows = [];
  for (let y = 0; y < SIDE; y++) {
    const row = [];
    for (let x = 0; x < SIDE; x++) row.push([round3(img[y * SIDE + x])]);
    rows.push(row);
  }
  return rows;
}

function flat(image) { // [28][28][1] -> Float32Array(784)
  const img = new Float32Array(PIXELS);
  for (let y = 0; y < SIDE; y++) for (let x = 0; x < SIDE; x++) img[y * SIDE + x] = image[y][x][0];
  return img;
}

function withLabels(inputs, labels) {
  if (S.conditional) inputs.labels = labels;
  return inputs;
}

const chosenLabel = () => parseInt($("label").value || "0", 10);

async function encode(items) { // items: [{img, label}] -> [Float32Array]
  const {out} = await predict("encode", withLabels(
    {images: items.map((it) => nested(it.img))}, items.map((it) => it.label)));
  return out[S.zKey].map((z) => Float32Array.from(z));
}

async function decode(codes, label) { // -> {images: [Float32Array], ms}
  const l = label === undefined ? chosenLabel() : label;
  const {out, ms} = await predict("decode", withLabels(
    {z: codes.map((z) => Array.from(z, round3))}, codes.map(() => l)));
  return {images: out.images.map(flat), ms};
}

// -- drawing -------------------------------------------------------------------------------------
function paint(canvas, images, cols, scale) {
  const ctx = canvas.getContext("2d");
  const tile = document.createElement("canvas");
  tile.width = tile.height = SIDE;
  const tctx = tile.getContext("2d");
  const pixels = tctx.createImageData(SIDE, SIDE);
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  images.forEach((img, i) => {
    for (let p = 0; p < PIXELS; p++) {
      const v = Math.max(0, Math.min(255, Math.round(img[p] * 255)));
      pixels.data[4 * p] = pixels.data[4 * p + 1] = pixels.data[4 * p + 2] = v;
      pixels.data[4 * p + 3] = 255;
    }
    tctx.putImageData(pixels, 0, 0);
    const s = SIDE * scale;
    ctx.drawImage(tile, (i % cols) * s, Math.floor(i / cols) * s, s, s);
  });
}

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(rand) {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

// -- the data bundled with the page -----------------------------------------------------------------
function galleryMarks() {
  document.querySelectorAll("#gallery canvas").forEach((c, i) => {
    c.classList.toggle("base", S.base && S.base.name === `digit ${i}`);
    c.classList.toggle("b", S.b && S.b.name === `digit ${i}`);
  });
  $("base-index").textContent = S.base ? S.base.name : "-";
  $("a-index").textContent = S.a ? S.a.name : "-";
  $("b-index").textContent = S.b ? S.b.name : "-";
}

function digitItem(i) {
  return {img: S.digits[i].img, label: S.digits[i].label, code: S.codes[i] || null, name: `digit ${i}`};
}

function buildGallery() {
  const gallery = $("gallery");
  S.digits.forEach((d, i) => {
    const c = document.createElement("canvas");
    c.width = c.height = SIDE;
    c.dataset.index = i;
    c.title = `test digit ${i} (label ${d.label})`;
    paint(c, [d.img], 1, 1);
    c.addEventListener("click", (event) => {
      if (event.shiftKey) { S.b = digitItem(i); galleryMarks(); return; }
      S.a = digitItem(i);
      setBase(digitItem(i));
    });
    gallery.appendChild(c);
  });
}

// -- model selection -------------------------------------------------------------------------------
async function loadModels() {
  const served = (await getJSON("/explorer/models.json")).models;
  S.classifier = served.includes(CLASSIFIER); // served for the classify panel, not explored
  const models = served.filter((m) => m !== CLASSIFIER);
  const select = $("model");
  select.innerHTML = "";
  models.forEach((m) => select.add(new Option(m, m)));
  const wanted = new URLSearchParams(location.search).get("model");
  select.value = models.includes(wanted) ? wanted : (models.includes("conv_vae") ? "conv_vae" : models[0]);
  await loadVersions();
}

async function loadVersions() {
  S.model = $("model").value;
  const status = await getJSON(`/v1/models/${encodeURIComponent(S.model)}`);
  const versions = status.model_version_status
    .filter((v) => v.state === "AVAILABLE").map((v) => parseInt(v.version, 10)).sort((x, y) => y - x);
  const select = $("version");
  select.innerHTML = "";
  versions.forEach((v) => select.add(new Option(String(v), String(v))));
  await loadModel();
}

async function loadModel() {
  setStatus(`loading ${$("model").value} ...`, false);
  S.model = $("model").value;
  S.version = $("version").value;
  const meta = await getJSON(
    `/v1/models/${encodeURIComponent(S.model)}/versions/${S.version}/metadata`);
  S.sigs = meta.metadata.signature_def.signature_def;
  // A model without encode/decode (PixelCNN: no latent) keeps samples, denoise and outlier score.
  S.latent = has("encode") && has("decode");
  S.latentDim = S.latent ? parseInt(S.sigs.decode.inputs.z.tensor_shape.dim[1].size, 10) : 0;
  S.conditional = Object.values(S.sigs).some((sig) => sig.inputs && "labels" in sig.inputs);
  S.zKey = S.latent && "z_mean" in S.sigs.encode.outputs ? "z_mean" : "z";
  $("label-box").hidden = !S.conditional;
  $("info").textContent = `${S.latent ? `latent ${S.latentDim}` : "no latent"} · ${Object.keys(S.sigs)
    .filter((k) => k !== "serving_default" && !k.startsWith("__")).sort().join(", ")}`;
  // Codes of the bundled test digits: slider ranges, the pad's scatter, attribute vectors.
  S.codes = S.latent ? await encode(S.digits) : [];
  S.lo = []; S.hi = []; S.spread = [];
  for (let d = 0; d < S.latentDim; d++) {
    const vals = S.codes.map((z) => z[d]);
    const mean = vals.reduce((p, v) => p + v, 0) / vals.length;
    const std = Math.sqrt(vals.reduce((p, v) => p + (v - mean) ** 2, 0) / vals.length);
    const half = 3 * Math.max(std, 0.35); // inactive VAE dimensions still get a usable range
    S.spread.push(std);
    S.lo.push(Math.min(mean - half, ...vals));
    S.hi.push(Math.max(mean + half, ...vals));
  }
  // Most active dimensions first: a VAE leaves many unused (their codes barely vary).
  S.order = [...Array(S.latentDim).keys()].sort((x, y) => S.spread[y] - S.spread[x]);
  S.path = null;
  S.times = null;
  $("decode-ms").textContent = "-";
  for (const id of ["samples", "interp", "attr", "denoised", "decoded", "pad"]) { // drop the previous model's pictures
    const c = $(id);
    c.getContext("2d").clearRect(0, 0, c.width, c.height);
    delete c.dataset.steps; delete c.dataset.done; delete c.dataset.sigma; delete c.dataset.seed;
  }
  delete $("score-text").dataset.value;
  buildSliders();
  const sectionOn = (id, on, note, text) => {
    $(id).classList.toggle("disabled", !on);
    if (note) $(note).textContent = on ? "" : text;
  };
  for (const [id, note] of [["latent-section", "latent-note"], ["interp-section", "interp-note"],
    ["attr-section", "attr-none"]]) {
    sectionOn(id, S.latent, note, `${S.model} has no encode/decode signatures (no latent space).`);
  }
  sectionOn("sample-section", has("sample"), "sample-note",
    `${S.model} has no sample signature (not a generative model); pick vae, conv_vae or cvae.`);
  if (has("sample") && !S.latent) {
    $("sample-note").textContent = `${S.model} samples pixel by pixel (784 steps), on demand: ` +
      "on 2 CPU cores the shipped pixelcnn draws a grid in about half a second, pixelrnn in " +
      "about one second.";
  }
  sectionOn("denoise-section", has("denoise"), "denoise-note",
    `${S.model} has no denoise signature; pick denoising_ae.`);
  sectionOn("outlier-section", has("log_prob"), null);
  $("score-text").textContent = has("log_prob") ? "" :
    `${S.model} has no log_prob signature; pick vae, conv_vae or cvae.`;
  sectionOn("classify-section", has("label_posterior"), "classify-note",
    `${S.model} has no label_posterior signature; pick cvae or cpixelcnn (conditional models).`);
  if (has("label_posterior") && !S.classifier) {
    $("classify-note").textContent = `${CLASSIFIER} is not served: export it ` +
      "(genkeras/serving/explorer/classifier.py) and list it in the model config for its softmax.";
  }
  clearClassify();
  drawHistogram(null);
  S.a = refresh(S.a) || digitItem(0);
  S.b = refresh(S.b) || digitItem(1);
  await setBase(refresh(S.base) || digitItem(0));
  setStatus(`ready: ${S.model} v${S.version}`, true);
}

function refresh(item) { // codes depend on the model: recompute lazily for drawn images
  if (!item) return null;
  const m = /^digit (\d+)$/.exec(item.name);
  return m ? digitItem(parseInt(m[1], 10)) : {...item, code: null};
}

async function codeOf(item) {
  if (!item.code) item.code = (await encode([item]))[0];
  return item.code;
}

// -- latent sliders and pad ----------------------------------------------------------------------
function buildSliders() {
  const box = $("sliders");
  box.innerHTML = "";
  for (const d of S.order) {
    const label = document.createElement("span");
    label.textContent = `z${d}`;
    label.title = `spread of the test digits' codes: ${S.spread[d].toFixed(2)}`;
    const input = document.createElement("input");
    Object.assign(input, {type: "range", min: S.lo[d], max: S.hi[d], step: (S.hi[d] - S.lo[d]) / 200});
    input.id = `z${d}`;
    input.dataset.dim = d;
    input.addEventListener("input", () => {
      S.current[d] = parseFloat(input.value);
      drawPad();
      requestDecode();
    });
    box.append(label, input);
  }
  for (const id of ["pad-x", "pad-y"]) {
    const select = $(id);
    select.innerHTML = "";
    for (const d of S.order) select.add(new Option(String(d), String(d)));
  }
  $("pad-x").value = String(S.order[0]);
  $("pad-y").value = String(S.order[Math.min(1, S.latentDim - 1)]);
}

function syncSliders() {
  for (let d = 0; d < S.latentDim; d++) $(`z${d}`).value = S.current[d];
}

async function setBase(item) {
  S.base = item;
  if (S.conditional) $("label").value = String(item.label);
  galleryMarks();
  if (!S.latent) { S.current = null; return; }
  S.current = Float32Array.from(await codeOf(item));
  syncSliders();
  drawPad();
  requestDecode();
}

function requestDecode() {
  if (S.inflight) { S.pending = true; return; }
  S.inflight = true;
  S.pending = false;
  decode([S.current]).then(({images, ms}) => {
    paint($("decoded"), images, 1, 6);
    if (S.times === null) { // a model's first decode is cold (the server's first call): not counted
      S.times = [];
    } else {
      S.times = [...S.times.slice(-19), ms]; // the median of the last 20
      const sorted = [...S.times].sort((x, y) => x - y);
      $("decode-ms").textContent = sorted[Math.floor(sorted.length / 2)].toFixed(1);
      $("decode-ms").title = `last ${ms.toFixed(1)} ms; median of the last ${sorted.length}`;
    }
    S.decodes += 1;
    $("decoded").dataset.decodes = String(S.decodes);
  }).catch((e) => setStatus(`decode failed: ${e.message}`, true)).finally(() => {
    S.inflight = false;
    if (S.pending) requestDecode();
  });
}

const LABEL_COLORS = ["#e57373", "#f06292", "#ba68c8", "#7986cb", "#4fc3f7",
  "#4db6ac", "#aed581", "#fff176", "#ffb74d", "#a1887f"];

function padAxes() {
  const dx = parseInt($("pad-x").value, 10), dy = parseInt($("pad-y").value, 10);
  const c = $("pad");
  const toX = (v) => ((v - S.lo[dx]) / (S.hi[dx] - S.lo[dx])) * c.width;
  const toY = (v) => c.height - ((v - S.lo[dy]) / (S.hi[dy] - S.lo[dy])) * c.height;
  const fromX = (px) => S.lo[dx] + (px / c.width) * (S.hi[dx] - S.lo[dx]);
  const fromY = (py) => S.lo[dy] + ((c.height - py) / c.height) * (S.hi[dy] - S.lo[dy]);
  return {dx, dy, toX, toY, fromX, fromY};
}

function drawPad() {
  if (!S.current) return;
  const c = $("pad"), ctx = c.getContext("2d");
  const {dx, dy, toX, toY} = padAxes();
  ctx.fillStyle = "#1c2430";
  ctx.fillRect(0, 0, c.width, c.height);
  S.codes.forEach((z, i) => { // the bundled test digits, coloured by label
    ctx.fillStyle = LABEL_COLORS[S.digits[i].label];
    ctx.fillRect(toX(z[dx]) - 2, toY(z[dy]) - 2, 4, 4);
  });
  if (S.path) {
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    S.path.forEach((z, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, toX(z[dx]), toY(z[dy])));
    ctx.stroke();
    ctx.fillStyle = "#fff";
    S.path.forEach((z) => ctx.fillRect(toX(z[dx]) - 1.5, toY(z[dy]) - 1.5, 3, 3));
  }
  const x = toX(S.current[dx]), y = toY(S.current[dy]);
  ctx.strokeStyle = "#ff9800";
  ctx.lineWidth = 2;
  ctx.beginPath();
  ctx.moveTo(x - 7, y); ctx.lineTo(x + 7, y); ctx.moveTo(x, y - 7); ctx.lineTo(x, y + 7);
  ctx.stroke();
}

function padEvents() {
  const c = $("pad");
  let down = false;
  const move = (event) => {
    if (!down || !S.current) return;
    const r = c.getBoundingClientRect();
    const {dx, dy, fromX, fromY} = padAxes();
    S.current[dx] = fromX((event.clientX - r.left) * (c.width / r.width));
    if (dy !== dx) S.current[dy] = fromY((event.clientY - r.top) * (c.height / r.height));
    syncSliders();
    drawPad();
    requestDecode();
  };
  c.addEventListener("pointerdown", (e) => { down = true; c.setPointerCapture(e.pointerId); move(e); });
  c.addEventListener("pointermove", move);
  c.addEventListener("pointerup", () => { down = false; });
  $("pad-x").addEventListener("change", drawPad);
  $("pad-y").addEventListener("change", drawPad);
}

// -- the drawing canvas ----------------------------------------------------------------------------
function drawCanvasEvents() {
  const c = $("draw"), ctx = c.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, c.width, c.height); };
  clear();
  let last = null;
  const at = (e) => {
    const r = c.getBoundingClientRect();
    return [(e.clientX - r.left) * (c.width / r.width), (e.clientY - r.top) * (c.height / r.height)];
  };
  c.addEventListener("pointerdown", (e) => { last = at(e); c.setPointerCapture(e.pointerId); });
  c.addEventListener("pointermove", (e) => {
    if (!last) return;
    const p = at(e);
    Object.assign(ctx, {strokeStyle: "#fff", lineWidth: 18, lineCap: "round", lineJoin: "round"});
    ctx.beginPath(); ctx.moveTo(...last); ctx.lineTo(...p); ctx.stroke();
    last = p;
  });
  c.addEventListener("pointerup", () => { last = null; });
  $("clear-draw").addEventListener("click", clear);
  c.addEventListener("dragover", (e) => e.preventDefault());
  c.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer.files[0];
    if (!file) return;
    const image = new Image();
    image.onload = () => {
      const invert = $("invert-drop").checked;
      ctx.fillStyle = invert ? "#fff" : "#000";
      ctx.fillRect(0, 0, c.width, c.height);
      const scale = (0.72 * c.width) / Math.max(image.width, image.height); // MNIST: 20 of 28 px
      const w = image.width * scale, h = image.height * scale;
      ctx.drawImage(image, (c.width - w) / 2, (c.height - h) / 2, w, h);
      const px = ctx.getImageData(0, 0, c.width, c.height);
      for (let i = 0; i < px.data.length; i += 4) {
        let g = 0.299 * px.data[i] + 0.587 * px.data[i + 1] + 0.114 * px.data[i + 2];
        if (invert) g = 255 - g;
        px.data[i] = px.data[i + 1] = px.data[i + 2] = g;
      }
      ctx.putImageData(px, 0, 0);
      URL.revokeObjectURL(image.src);
    };
    image.src = URL.createObjectURL(file);
  });
}

function drawingImage() { // the 224x224 drawing shrunk to 28x28, values in [0, 1]
  const small = document.createElement("canvas");
  small.width = small.height = SIDE;
  const ctx = small.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage($("draw"), 0, 0, SIDE, SIDE);
  const data = ctx.getImageData(0, 0, SIDE, SIDE).data;
  const img = new Float32Array(PIXELS);
  for (let p = 0; p < PIXELS; p++) img[p] = data[4 * p] / 255;
  return img;
}

const drawnItem = () => ({img: drawingImage(), label: chosenLabel(), code: null, name: "drawing"});

// -- samples, interpolation, attributes, denoising, outlier score ---------------------------------
async function sample() {
  if (!has("sample")) return;
  const seed = parseInt($("seed").value || "0", 10);
  const inputs = withLabels({num: 16, seed}, Array(16).fill(chosenLabel()));
  const note = $("sample-note"), before = note.textContent;
  note.textContent = `sampling ${S.model} ...`;
  const {out, ms} = await predict("sample", inputs).finally(() => { note.textContent = before; });
  $("samples").title = `16 samples in ${ms.toFixed(0)} ms`;
  paint($("samples"), out.images.map(flat), 4, 4);
  $("samples").dataset.seed = String(seed);
}

async function interpolate() {
  if (!S.latent) return;
  const steps = Math.max(2, Math.min(20, parseInt($("steps").value || "10", 10)));
  const [za, zb] = [await codeOf(S.a), await codeOf(S.b)];
  const path = [];
  for (let i = 0; i < steps; i++) {
    const t = i / (steps - 1);
    path.push(za.map((v, d) => (1 - t) * v + t * zb[d]));
  }
  const {images} = await decode(path);
  const c = $("interp");
  c.width = steps * 56;
  paint(c, images, steps, 2);
  c.dataset.steps = String(steps);
  S.path = path;
  drawPad();
}

const K_VALUES = [-1.5, -1, -0.5, 0, 0.5, 1, 1.5];

function attributeVector(name) { // mean code of the top quarter minus mean code of the bottom one
  const order = S.digits.map((d, i) => [d[name], i]).sort((x, y) => x[0] - y[0]).map((p) => p[1]);
  const q = Math.max(1, Math.floor(order.length / 4));
  const mean = (idx) => S.codes[0].map((_, d) => idx.reduce((p, i) => p + S.codes[i][d], 0) / idx.length);
  const top = mean(order.slice(-q)), bottom = mean(order.slice(0, q));
  return top.map((v, d) => v - bottom[d]);
}

async function editAttribute() {
  if (!S.latent) return;
  const name = $("attribute").value;
  const s = attributeVector(name);
  const mu = await codeOf(S.base);
  const {images} = await decode(K_VALUES.map((k) => mu.map((v, d) => v + k * s[d])), S.base.label);
  paint($("attr"), images, K_VALUES.length, 2);
  $("attr").dataset.done = name;
}

async function denoise() {
  if (!has("denoise")) return;
  const sigma = parseFloat($("noise").value);
  const rand = mulberry32(parseInt($("seed").value || "0", 10) + 1);
  const clean = S.base.img;
  const noisy = clean.map((v) => Math.min(1, Math.max(0, v + sigma * gaussian(rand))));
  const {out} = await predict("denoise", withLabels({images: [nested(noisy)]}, [S.base.label]));
  paint($("denoised"), [clean, noisy, flat(out.images[0])], 3, 3);
  $("denoised").dataset.sigma = String(sigma);
}

function drawHistogram(value) {
  const c = $("hist"), ctx = c.getContext("2d");
  ctx.fillStyle = "#fafafa";
  ctx.fillRect(0, 0, c.width, c.height);
  const hist = S.data.log_prob_histograms[S.model];
  if (!hist) {
    ctx.fillStyle = "#888";
    ctx.fillText(has("log_prob") ? `no test-set histogram bundled for ${S.model}` : "", 10, 20);
    return;
  }
  const lo = Math.min(hist.edges[0], value ?? Infinity);
  const hi = Math.max(hist.edges[hist.edges.length - 1], value ?? -Infinity);
  const pad = 0.03 * (hi - lo);
  const toX = (v) => 10 + ((v - (lo - pad)) / (hi - lo + 2 * pad)) * (c.width - 20);
  const top = Math.max(...hist.counts);
  ctx.fillStyle = "#90a4ae";
  hist.counts.forEach((n, i) => {
    const h = (n / top) * (c.height - 40);
    const x0 = toX(hist.edges[i]), x1 = toX(hist.edges[i + 1]);
    ctx.fillRect(x0, c.height - 20 - h, Math.max(1, x1 - x0 - 1), h);
  });
  ctx.fillStyle = "#333";
  ctx.font = "11px sans-serif";
  ctx.fillText(lo.toFixed(0), 4, c.height - 5);
  ctx.fillText(hi.toFixed(0), c.width - 30, c.height - 5);
  ctx.fillText(`log p(x), ${hist.n} MNIST test digits (v${hist.version})`, 110, c.height - 5);
  if (value !== null && value !== undefined) {
    ctx.strokeStyle = "#d32f2f";
    ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(toX(value), 5); ctx.lineTo(toX(value), c.height - 20); ctx.stroke();
  }
}

async function score(item) {
  if (!has("log_prob")) return;
  const {out} = await predict("log_prob", withLabels({images: [nested(item.img)]}, [item.label]));
  const value = out.log_prob[0];
  const hist = S.data.log_prob_histograms[S.model];
  let text = `${item.name}: log p(x) = ${value.toFixed(1)} nats`;
  if (hist) {
    const below = hist.values.filter((v) => v < value).length / hist.values.length;
    text += ` · ${(100 * below).toFixed(1)}% of the test digits score lower` +
      (below < 0.01 ? " · outlier" : "");
  }
  $("score-text").textContent = text;
  $("score-text").dataset.value = String(value);
  drawHistogram(value);
}

function noiseItem() {
  const rand = mulberry32(parseInt($("seed").value || "0", 10) + 7);
  return {img: new Float32Array(PIXELS).map(() => rand()), label: chosenLabel(), code: null, name: "uniform noise"};
}

// -- classification: Bayes' rule with a reject option beside a discriminative softmax ----------------
async function predictOn(model, signature, inputs) { // a model other than the explored one
  const response = await fetch(`/v1/models/${encodeURIComponent(model)}:predict`, {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({signature_name: signature, inputs}),
  });
  const doc = await response.json();
  if (!response.ok) throw new Error(doc.error || `HTTP ${response.status}`);
  return doc.outputs;
}

function drawBars(canvas, probs, best, color) {
  const ctx = canvas.getContext("2d"), w = canvas.width / 10, bottom = canvas.height - 16, top = 14;
  ctx.fillStyle = "#fafafa";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  delete canvas.dataset.probabilities;
  if (!probs) return;
  ctx.font = "11px sans-serif";
  ctx.textAlign = "center";
  probs.forEach((p, y) => {
    const h = p * (bottom - top);
    ctx.fillStyle = y === best ? color : "#b0bec5";
    ctx.fillRect(y * w + 3, bottom - h, w - 6, Math.max(h, 1));
    ctx.fillStyle = "#333";
    ctx.fillText(String(y), y * w + w / 2, canvas.height - 3);
    if (p >= 0.05) ctx.fillText(p.toFixed(2), y * w + w / 2, bottom - h - 2);
  });
  canvas.dataset.probabilities = JSON.stringify(probs);
}

function clearClassify() {
  drawBars($("posterior-bars"), null);
  drawBars($("softmax-bars"), null);
  $("classify-verdict").textContent = "";
  delete $("classify-verdict").dataset.verdict;
}

const argmax = (values) => values.reduce((best, v, i) => (v > values[best] ? i : best), 0);

async function classify(item) {
  if (!has("label_posterior")) return;
  const image = [nested(item.img)];
  const [{out}, softmax] = await Promise.all([
    predict("label_posterior", {images: image}),
    S.classifier ? predictOn(CLASSIFIER, "serving_default", {images: image}) : null,
  ]);
  const probs = out.probabilities[0], label = out.label[0], logp = out.log_prob[0];
  const outlier = out.outlier[0];
  drawBars($("posterior-bars"), probs, label, outlier ? "#757575" : "#1976d2");
  const verdict = $("classify-verdict");
  verdict.textContent = outlier ?
    `${item.name}: outlier · log p(x) = ${logp.toFixed(1)} nats, below the threshold (p(y | x) ` +
      `would say ${label})` :
    `${item.name}: ${label} · p(y = ${label} | x) = ${probs[label].toFixed(3)} · ` +
      `log p(x) = ${logp.toFixed(1)} nats`;
  if (softmax) {
    const soft = softmax.probabilities[0], top = argmax(soft);
    drawBars($("softmax-bars"), soft, top, "#ef6c00");
    verdict.textContent += ` · classifier: ${top} (${(100 * soft[top]).toFixed(0)}%)`;
  }
  verdict.dataset.verdict = outlier ? "outlier" : String(label);
  verdict.dataset.count = String(Number(verdict.dataset.count || 0) + 1);
}

// -- wiring ------------------------------------------------------------------------------------------
function guard(fn) {
  return (...args) => Promise.resolve().then(() => fn(...args)).catch((e) => {
    console.error(e);
    setStatus(`error: ${e.message}`, true);
  });
}

async function main() {
  setStatus("loading ...", false);
  S.data = await getJSON("/static/explorer_data.json");
  S.digits = S.data.digits.map((d) => ({...d, img: Float32Array.from(d.pixels, (v) => v / 255)}));
  Object.keys(S.data.attributes).forEach((a) => $("attribute").add(new Option(a, a)));
  $("attr-note").textContent = "s = mean code of the top quarter of the bundled test digits by " +
    "the attribute minus that of the bottom quarter; the strip decodes base + k·s.";
  for (let l = 0; l < 10; l++) $("label").add(new Option(String(l), String(l)));
  buildGallery();
  padEvents();
  drawCanvasEvents();
  $("model").addEventListener("change", guard(loadVersions));
  $("version").addEventListener("change", guard(loadModel));
  $("label").addEventListener("change", () => S.current && requestDecode());
  $("sample").addEventListener("click", guard(sample));
  $("reset-latent").addEventListener("click", guard(() => setBase(S.base)));
  $("interpolate").addEventListener("click", guard(interpolate));
  $("attr-run").addEventListener("click", guard(editAttribute));
  $("denoise").addEventListener("click", guard(denoise));
  $("noise").addEventListener("input", () => { $("noise-value").textContent = $("noise").value; });
  $("draw-as-base").addEventListener("click", guard(() => setBase(drawnItem())));
  $("draw-as-a").addEventListener("click", () => { S.a = drawnItem(); galleryMarks(); });
  $("draw-as-b").addEventListener("click", () => { S.b = drawnItem(); galleryMarks(); });
  $("score-draw").addEventListener("click", guard(() => score(drawnItem())));
  $("score-base").addEventListener("click", guard(() => score(S.base)));
  $("score-noise").addEventListener("click", guard(() => score(noiseItem())));
  $("classify-draw").addEventListener("click", guard(() => classify(drawnItem())));
  $("classify-base").addEventListener("click", guard(() => classify(S.base)));
  $("classify-noise").addEventListener("click", guard(() => classify(noiseItem())));
  await loadModels();
  if (has("sample") && S.latent) await sample(); // autoregressive models sample on demand
}

guard(main)();
