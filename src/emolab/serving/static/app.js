// The emolab demo page: pick a served model, classify a text, an uploaded face or a webcam frame, and see
// the labels as probability bars. Talks only to this server's /v1 API; no third-party assets.
"use strict";

const $ = (id) => document.getElementById(id);
const apiKey = new URLSearchParams(location.search).get("api_key");
const headers = (extra = {}) => (apiKey ? { "X-API-Key": apiKey, ...extra } : extra);
let models = [];

function current() {
  return models.find((m) => m.name === $("model").value);
}

function fmt(x) {
  return typeof x === "number" ? x.toFixed(4) : "–";
}

function showModel() {
  const m = current();
  if (!m) return;
  const parts = [`${m.summary}`, `${m.labels.length} labels`];
  if (m.metrics && m.metrics.accuracy !== undefined) {
    parts.push(`${m.metrics.split} accuracy ${fmt(m.metrics.accuracy)}, macro-F1 ${fmt(m.metrics.macro_f1)}`);
  }
  $("about").textContent = parts.join(" · ");
  $("text-input").hidden = m.modality !== "text";
  $("image-input").hidden = m.modality !== "image";
  $("bars").replaceChildren();
  $("status").textContent = "";
  $("faces").textContent = "";
  $("photo").hidden = true;
}

function drawBars(rows) {
  const items = rows.map(({ label, score }) => {
    const li = document.createElement("li");
    li.dataset.label = label;
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${(100 * score).toFixed(1)}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "score";
    value.textContent = score.toFixed(4);
    li.append(name, bar, value);
    return li;
  });
  $("bars").replaceChildren(...items);
}

function showError(data) {
  $("status").className = "error";
  $("status").textContent = `${data.error.field ? data.error.field + ": " : ""}${data.error.message}`;
}

// POST to one of the current model's routes; returns the JSON answer, or null after showing its error.
async function post(route, body, isForm, waiting) {
  $("status").className = "muted";
  $("status").textContent = waiting;
  const response = await fetch(`v1/models/${encodeURIComponent(current().name)}/${route}`, {
    method: "POST",
    headers: isForm ? headers() : headers({ "Content-Type": "application/json" }),
    body: isForm ? body : JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) {
    showError(data);
    return null;
  }
  $("status").textContent = "";
  return data;
}

// Image models: the photo goes to /faces; each face found gets a box and its label drawn on the photo, and
// the bars show the largest face.
async function classifyPhoto(image, body, isForm) {
  const data = await post("faces", body, isForm, "Finding faces…");
  if (!data) return;
  const faces = data[0];
  const canvas = $("photo");
  const scale = Math.min(1, 480 / Math.max(image.width, image.height));
  canvas.width = Math.round(image.width * scale);
  canvas.height = Math.round(image.height * scale);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  ctx.lineWidth = 3;
  ctx.font = "14px system-ui, sans-serif";
  faces.forEach((face, i) => {
    if (!face.box) return;
    const { xmin, ymin, xmax, ymax } = face.box;
    ctx.strokeStyle = i === 0 ? "#1f9d55" : "#3d6fd9";
    ctx.strokeRect(xmin * scale, ymin * scale, (xmax - xmin) * scale, (ymax - ymin) * scale);
    const text = `${i + 1}: ${face.label} ${face.labels[0].score.toFixed(2)}`;
    ctx.fillStyle = ctx.strokeStyle;
    ctx.fillRect(xmin * scale, Math.max(0, ymin * scale - 20), ctx.measureText(text).width + 8, 20);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, xmin * scale + 4, Math.max(14, ymin * scale - 6));
  });
  canvas.hidden = false;
  $("faces").textContent = faces.length
    ? faces.map((f, i) => `face ${i + 1}: ${f.label}`).join(" · ")
    : "No face found in this photo.";
  if (faces.length) drawBars(faces[0].labels);
  else $("bars").replaceChildren();
}

async function predict(body, isForm = false) {
  const data = await post("predict", body, isForm, "Classifying…");
  if (data) drawBars(data[0]);
}

$("classify-text").addEventListener("click", () => {
  const text = $("text").value;
  if (text.trim()) predict({ inputs: text });
});

$("image").addEventListener("change", () => {
  const file = $("image").files[0];
  if (!file) return;
  const image = new Image();
  image.onload = () => {
    const form = new FormData();
    form.append("file", file);
    classifyPhoto(image, form, true);
  };
  image.src = URL.createObjectURL(file);
});

$("camera-start").addEventListener("click", async () => {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true });
    $("video").srcObject = stream;
    $("video").hidden = false;
    $("camera-shot").hidden = false;
  } catch (err) {
    $("status").className = "error";
    $("status").textContent = `No camera: ${err.message}`;
  }
});

$("camera-shot").addEventListener("click", () => {
  const video = $("video");
  const canvas = $("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  classifyPhoto(canvas, { inputs: canvas.toDataURL("image/jpeg", 0.9) }, false);
});

$("model").addEventListener("change", showModel);

async function start() {
  const response = await fetch("v1/models", { headers: headers() });
  const data = await response.json();
  if (!response.ok) {
    $("about").className = "error";
    $("about").textContent = data.error.message;
    return;
  }
  models = data.models;
  $("model").replaceChildren(...models.map((m) => new Option(`${m.name} (${m.modality})`, m.name)));
  showModel();
}

start();
