// hemoscan serve: the page. Plain JavaScript against the server's REST API (same origin only).
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  model: null,
  result: null,
  slice: 0,
  window: "",
  heatmap: true,
  mask: true,
  opacity: 0.55,
};

const WINDOW_NAMES = { brain: "Brain", subdural: "Subdural", bone: "Bone" };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function percent(p) {
  return (100 * p).toFixed(p >= 0.9995 || p < 0.0005 ? 0 : 1) + "%";
}

function capitalise(s) {
  return s ? s.charAt(0).toUpperCase() + s.slice(1) : s;
}

function timeAgo(iso) {
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  if (!isFinite(seconds)) return iso;
  if (seconds < 60) return "just now";
  if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
  if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
  return new Date(iso).toLocaleDateString();
}

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) askToken();
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

// ---- Access token (servers started with --token-file) ----
// The token is sent once to /api/session, which keeps it as an HttpOnly session cookie: images and
// API calls carry it from then on, and this script never stores it.

function askToken() {
  $("token-form").hidden = false;
  $("token-input").focus();
}

async function signIn(e) {
  e.preventDefault();
  const input = $("token-input");
  const response = await fetch("/api/session", {
    method: "POST",
    headers: { Authorization: "Bearer " + input.value.trim(), Accept: "application/json" },
  }).catch(() => null);
  if (!response || !response.ok) {
    $("token-error").textContent = response ? "That token is not valid." : "The server could not be reached.";
    return;
  }
  input.value = "";
  $("token-error").textContent = "";
  $("token-form").hidden = true;
  showError("");
  loadModel();
  loadHistory();
  openFromUrl();
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

// ---- Server and model ----

async function checkHealth() {
  const health = $("health");
  try {
    const h = await getJson("/health");
    health.className = "health ok";
    health.querySelector(".text").textContent = "online · v" + h.version;
  } catch {
    health.className = "health down";
    health.querySelector(".text").textContent = "offline";
  }
}

async function loadModel() {
  try {
    const m = await getJson("/api/model");
    state.model = m;
    const info = $("model-info");
    info.replaceChildren(
      el("span", { class: "chip" }, "Model ", el("strong", {}, m.model || "classifier")),
      el("span", { class: "chip" }, "Labels ", el("strong", {}, m.labels.join(", "))),
      el("span", { class: "chip" }, "Input ", el("strong", {}, `${m.input.width}×${m.input.height}`)),
    );
    if (m.threshold !== null && m.threshold !== undefined) {
      info.append(el("span", { class: "chip" }, "Threshold ", el("strong", {}, m.threshold.toFixed(3))));
    }
    if (m.segmentation) info.append(el("span", { class: "chip" }, el("strong", {}, "Segmentation")));
    if (m.input.modality === "MR") {
      const seqs = (m.input.sequences || []).join(", ") || "one image";
      info.append(el("span", { class: "chip" }, "MR ", el("strong", {}, seqs)));
    }
  } catch (e) {
    $("model-info").textContent = "Model unavailable: " + e.message;
  }
}

// ---- Upload ----

function upload(files) {
  if (!files || files.length === 0) return;
  showError("");
  const form = new FormData();
  for (const f of files) form.append("file", f, f.name);
  const xhr = new XMLHttpRequest();
  const zone = $("dropzone");
  const progress = $("progress");
  const bar = $("progress-bar");
  const text = $("progress-text");
  zone.classList.add("busy");
  progress.hidden = false;
  progress.classList.remove("working");
  bar.style.width = "0%";
  text.textContent = files.length === 1 ? `Uploading ${files[0].name}…` : `Uploading ${files.length} files…`;
  xhr.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable) bar.style.width = Math.round((100 * e.loaded) / e.total) + "%";
  });
  xhr.upload.addEventListener("load", () => {
    progress.classList.add("working");
    text.textContent = "Analysing…";
  });
  xhr.addEventListener("loadend", () => {
    zone.classList.remove("busy");
    progress.hidden = true;
    let body = {};
    try {
      body = JSON.parse(xhr.responseText);
    } catch {
      body = {};
    }
    if (xhr.status === 201 || xhr.status === 200) {
      showResult(body, true);
      loadHistory();
    } else if (xhr.status === 401) {
      askToken();
      showError("Sign in with the server's access token, then upload again.");
    } else if (xhr.status === 0) {
      showError("The upload failed: the server could not be reached.");
    } else {
      showError(body.error ? capitalise(body.error) : `The server answered ${xhr.status}.`);
    }
  });
  xhr.open("POST", "/api/predict");
  xhr.setRequestHeader("Accept", "application/json");
  xhr.send(form);
}

function setupDropzone() {
  const zone = $("dropzone");
  const input = $("file-input");
  $("choose").addEventListener("click", (e) => {
    e.stopPropagation();
    input.click();
  });
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      input.click();
    }
  });
  input.addEventListener("change", () => {
    upload(Array.from(input.files));
    input.value = "";
  });
  // The whole window accepts drops, so a near miss does not open the file in the browser.
  let depth = 0;
  window.addEventListener("dragenter", (e) => {
    e.preventDefault();
    depth++;
    zone.classList.add("dragging");
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) zone.classList.remove("dragging");
  });
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    zone.classList.remove("dragging");
    upload(Array.from(e.dataTransfer.files));
  });
}

// ---- Result ----

function probabilityList(target, result, labels, testid) {
  target.replaceChildren();
  for (const label of labels) {
    const r = result[label];
    const fill = el("div", { class: "prob-fill" + (r.decision ? " pos" : "") });
    fill.style.width = (100 * r.probability).toFixed(1) + "%";
    const tick = el("div", { class: "prob-threshold", title: `threshold ${r.threshold.toFixed(3)}` });
    tick.style.left = `calc(${(100 * r.threshold).toFixed(1)}% - 1px)`;
    target.append(
      el("li", { dataset: { label } },
        el("div", { class: "prob-top" },
          el("span", { class: "prob-label" }, label),
          el("span", { class: "prob-value", "data-testid": testid }, percent(r.probability))),
        el("div", { class: "prob-track" }, fill, tick),
        el("div", { class: "prob-foot" },
          el("span", { class: "decision " + (r.decision ? "pos" : "neg") }, r.decision ? "Positive" : "Negative"),
          el("span", {}, "threshold " + percent(r.threshold)))));
  }
}

function showResult(r, fresh) {
  state.result = r;
  state.slice = r.top_slice || 0;
  const windows = r.windows || [];
  if (!windows.includes(state.window)) state.window = (r.render && r.render.default_window) || windows[0] || "";
  if (fresh) history.replaceState(null, "", "?id=" + r.id);

  // Result card
  const verdict = $("verdict");
  verdict.textContent = capitalise(r.finding);
  verdict.className = "verdict " + (r.positive ? "positive" : "negative");
  const kinds = { image: "Image", images: "Images", dicom: "DICOM slice", series: "DICOM series",
    sequences: "MR sequences" };
  const parts = [r.name, kinds[r.kind] || r.kind];
  // An MR model names the sequences it read, as channels, in its order.
  if (r.sequences && r.sequences.length) parts.push("channels " + r.sequences.join(", "));
  if (r.n_slices > 1) parts.push(`${r.n_slices} slices`);
  parts.push(new Date(r.created).toLocaleString());
  $("result-meta").textContent = parts.join(" · ");
  // The server names how the slices became the study's result (the study model, or the highest slice).
  const rule = r.study_rule === "study model" ? "study model over the slices"
    : r.study_rule === "mean of slices" ? "mean over slices" : "maximum over slices";
  $("study-title").textContent = r.n_slices > 1 ? `Study (${rule})` : "Result";
  probabilityList($("probabilities"), r.result, r.labels, "probability");
  $("slice-block").hidden = r.n_slices <= 1;

  const seg = $("segmentation");
  seg.hidden = !r.segmentation;
  if (r.segmentation) {
    seg.replaceChildren(
      el("div", {}, "Bleed volume ", el("strong", {}, r.segmentation.bleed_volume_ml.toFixed(1) + " mL")));
  }
  $("mask-switch").hidden = !r.segmentation;
  $("warnings").replaceChildren(...(r.warnings || []).map((w) => el("li", {}, w)));
  $("json-link").href = "/api/results/" + r.id;
  // The result as DICOM objects (DICOM inputs): SEG, SR and key-image secondary captures.
  const names = { SEG: "DICOM SEG", SR: "DICOM SR", SC: "Key image" };
  $("dicom-links").replaceChildren(...(r.dicom || []).map((d) =>
    el("a", { href: d.url, download: r.id + "_" + d.file, dataset: { kind: d.kind } }, names[d.kind] || d.kind)));
  $("dicom-links").hidden = !(r.dicom && r.dicom.length);
  $("result-card").hidden = false;

  // Viewer
  $("viewer").hidden = false;
  $("frame").style.setProperty("aspect-ratio", `${r.render.width} / ${r.render.height}`);
  renderWindows();
  renderStrip();
  const nav = $("slice-nav");
  nav.hidden = r.n_slices <= 1;
  const slider = $("slice");
  slider.max = String(r.n_slices - 1);
  updateSlice();
  highlightHistory();
}

function renderWindows() {
  const box = $("windows");
  const windows = state.result.windows || [];
  box.replaceChildren();
  if (windows.length === 0) {
    box.append(el("span", { class: "note" }, "Shown as uploaded"));
    return;
  }
  for (const w of windows) {
    box.append(el("button", {
      type: "button",
      class: w === state.window ? "active" : "",
      dataset: { window: w },
      onclick: () => {
        state.window = w;
        renderWindows();
        updateSlice();
      },
    }, WINDOW_NAMES[w] || w));
  }
}

function renderStrip() {
  const r = state.result;
  const strip = $("strip");
  strip.replaceChildren();
  if (r.n_slices <= 1) return;
  const label = r.heatmap_label;
  for (const s of r.slices) {
    const p = s.result[label];
    const bar = el("div", { class: "bar" + (p.decision ? " pos" : ""), title: `${s.name}: ${label} ${percent(p.probability)}` });
    bar.style.height = Math.max(4, 100 * p.probability).toFixed(1) + "%";
    bar.addEventListener("click", () => goTo(s.index));
    strip.append(bar);
  }
  const line = el("div", { class: "threshold" });
  line.style.bottom = (100 * r.result[label].threshold).toFixed(1) + "%";
  strip.append(line);
}

function goTo(k) {
  const n = state.result.n_slices;
  state.slice = Math.min(n - 1, Math.max(0, k));
  updateSlice();
}

function updateSlice() {
  const r = state.result;
  const s = r.slices[state.slice];
  const query = state.window ? "?window=" + encodeURIComponent(state.window) : "";
  const img = $("slice-img");
  const spinner = $("spinner");
  spinner.hidden = false;
  img.onload = img.onerror = () => { spinner.hidden = true; };
  img.src = s.image_url + query;
  const heat = $("heatmap-img");
  heat.src = s.heatmap_url;
  heat.hidden = !state.heatmap;
  heat.style.opacity = String(state.opacity);
  const mask = $("mask-img");
  if (s.mask_url) {
    mask.src = s.mask_url;
    mask.hidden = !state.mask;
  } else {
    mask.hidden = true;
  }
  $("overlay-link").href = s.overlay_url + query;
  $("slice").value = String(state.slice);
  // DICOM slices are named by position already ("slice 5"); images by their file name.
  const position = `${state.slice + 1} / ${r.n_slices}`;
  $("slice-label").textContent = r.kind === "series" || r.kind === "dicom" ? "Slice " + position : `${s.name} · ${position}`;
  for (const [i, bar] of Array.from($("strip").querySelectorAll(".bar")).entries()) {
    bar.classList.toggle("current", i === state.slice);
  }
  if (r.n_slices > 1) {
    $("slice-title").textContent = `This slice (${state.slice + 1} of ${r.n_slices})`;
    probabilityList($("slice-probabilities"), s.result, r.labels, "slice-probability");
    // Warm the neighbours so that scrolling does not wait.
    for (const d of [-1, 1]) {
      const n = r.slices[state.slice + d];
      if (n) new Image().src = n.image_url + query;
    }
  }
}

function setupViewer() {
  $("slice").addEventListener("input", (e) => goTo(Number(e.target.value)));
  $("prev").addEventListener("click", () => goTo(state.slice - 1));
  $("next").addEventListener("click", () => goTo(state.slice + 1));
  $("heatmap-toggle").addEventListener("change", (e) => {
    state.heatmap = e.target.checked;
    $("heatmap-img").hidden = !state.heatmap;
  });
  $("mask-toggle").addEventListener("change", (e) => {
    state.mask = e.target.checked;
    if (state.result) updateSlice();
  });
  $("opacity").addEventListener("input", (e) => {
    state.opacity = Number(e.target.value) / 100;
    $("heatmap-img").style.opacity = String(state.opacity);
  });
  $("stage").addEventListener("wheel", (e) => {
    if (!state.result || state.result.n_slices <= 1) return;
    e.preventDefault();
    goTo(state.slice + (e.deltaY > 0 ? 1 : -1));
  }, { passive: false });
  document.addEventListener("keydown", (e) => {
    if (!state.result || e.target.tagName === "INPUT") return;
    if (e.key === "ArrowDown" || e.key === "ArrowRight") goTo(state.slice + 1);
    else if (e.key === "ArrowUp" || e.key === "ArrowLeft") goTo(state.slice - 1);
  });
}

// ---- Worklist ----
// Every study the server was given (this page, the REST API, the DICOM node), in triage order: suspected
// bleeds first, then studies still being analysed, then the rest; newest first within each.

const statusNames = { received: "Receiving", analysing: "Analysing", done: "Done", sending: "Sending to PACS",
  sent: "In PACS", failed: "Failed", "send-failed": "Not sent" };

function worklistItem(item) {
  const sub = [item.source === "dicom" ? "DICOM" + (item.caller ? " from " + item.caller : "") : "Upload"];
  if (item.patient) sub.push(item.patient);
  if (item.slices > 1) sub.push(item.slices + " slices");
  if (item.received) sub.push(timeAgo(item.received));
  if (item.seconds_to_result != null) sub.push("result in " + item.seconds_to_result.toFixed(1) + " s");
  const pending = item.status === "received" || item.status === "analysing";
  const badge = pending ? el("span", { class: "badge pending" }, statusNames[item.status])
    : item.status === "failed" ? el("span", { class: "badge failed", title: item.error }, "Failed")
      : el("span", { class: "badge " + (item.positive ? "positive" : "negative") }, capitalise(item.finding));
  const li = el("li", {
    dataset: { id: item.id, status: item.status },
    title: item.error ? item.name + ": " + item.error : item.name,
    class: item.url ? "" : "no-result",
  },
  el("span", { class: "history-name" }, item.name),
  el("span", { class: "history-sub" }, sub.join(" · ")),
  badge);
  if (item.url) li.addEventListener("click", () => openResult(item.id));
  if (item.source === "dicom" && !pending && item.status !== "done" && item.status !== "failed") {
    li.append(el("span", { class: "history-status status-" + item.status, title: item.error || "" },
      statusNames[item.status] || item.status));
  }
  return li;
}

async function loadHistory() {
  try {
    const w = await getJson("/api/worklist?limit=100");
    $("history").replaceChildren(...w.items.map(worklistItem));
    $("history-empty").hidden = w.items.length > 0;
    $("history-count").textContent = w.total ? String(w.total) : "";
    if (w.dicom) {
      $("dicom-info").hidden = false;
      $("dicom-info").textContent = `DICOM node ${w.dicom.aet} on port ${w.dicom.port}` +
        (w.dicom.send_to ? ` · results to ${w.dicom.send_to}` : "") +
        (w.dicom.pending ? ` · ${w.dicom.pending} arriving` : "");
    }
    highlightHistory();
  } catch (e) {
    $("history-empty").hidden = false;
    $("history-empty").textContent = "Worklist unavailable: " + e.message;
  }
}

function highlightHistory() {
  const id = state.result ? state.result.id : "";
  for (const li of $("history").children) li.classList.toggle("active", li.dataset.id === id);
}

async function openResult(id) {
  try {
    showError("");
    const r = await getJson("/api/results/" + encodeURIComponent(id));
    showResult(r, true);
  } catch (e) {
    showError(e.message);
  }
}

async function deleteResult() {
  const r = state.result;
  if (!r || !window.confirm(`Delete “${r.name}” and its images from the server?`)) return;
  const response = await fetch("/api/results/" + encodeURIComponent(r.id), { method: "DELETE" }).catch(() => null);
  if (!response || (response.status !== 204 && response.status !== 404)) {
    const body = response ? await response.json().catch(() => ({})) : {};
    showError("The result was not deleted: " + (body.error || (response ? response.status : "no answer")));
    return;
  }
  state.result = null;
  $("viewer").hidden = true;
  $("result-card").hidden = true;
  history.replaceState(null, "", location.pathname);
  loadHistory();
}

function openFromUrl() {
  const id = new URLSearchParams(location.search).get("id");
  if (id && /^[0-9a-f]{16}$/.test(id)) openResult(id);
}

// ---- Start ----

document.addEventListener("DOMContentLoaded", () => {
  setupDropzone();
  setupViewer();
  checkHealth();
  setInterval(checkHealth, 30000);
  $("token-form").addEventListener("submit", signIn);
  $("delete-result").addEventListener("click", deleteResult);
  loadModel();
  loadHistory();
  // New studies arrive from the PACS without anyone on the page: keep the worklist current.
  setInterval(() => { if (!document.hidden) loadHistory(); }, 5000);
  openFromUrl();
});
