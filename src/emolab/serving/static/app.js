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

async function predict(body, isForm = false) {
  const m = current();
  $("status").className = "muted";
  $("status").textContent = "Classifying…";
  const response = await fetch(`v1/models/${encodeURIComponent(m.name)}/predict`, {
    method: "POST",
    headers: isForm ? headers() : headers({ "Content-Type": "application/json" }),
    body: isForm ? body : JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) {
    $("status").className = "error";
    $("status").textContent = `${data.error.field ? data.error.field + ": " : ""}${data.error.message}`;
    return;
  }
  $("status").textContent = "";
  drawBars(data[0]);
}

$("classify-text").addEventListener("click", () => {
  const text = $("text").value;
  if (text.trim()) predict({ inputs: text });
});

$("image").addEventListener("change", () => {
  const file = $("image").files[0];
  if (!file) return;
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
  const form = new FormData();
  form.append("file", file);
  predict(form, true);
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
  predict({ inputs: canvas.toDataURL("image/jpeg", 0.9) });
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
