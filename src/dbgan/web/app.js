// dbgan serve: upload, poll the job's tile progress, compare before/after, download. No external code.
"use strict";
const $ = (id) => document.getElementById(id);
let queue = [];
let busy = false;
let maxUploadMb = Infinity;
let shakePx = 31;

function showError(msg) { const e = $("error"); e.textContent = msg; e.hidden = !msg; }
function setStatus(text, value) { $("status").textContent = text; if (value !== undefined) $("progress").value = value; }

async function loadModels() {
  const r = await fetch("/api/models");
  const info = await r.json();
  const sel = $("model");
  for (const m of info.models) {
    const o = document.createElement("option");
    o.value = m.id; o.textContent = m.label; sel.appendChild(o);
  }
  sel.value = info.default;
  const coarse = $("coarse");
  for (const w of info.blur_widths || [{ coarse_levels: 0, label: "normal" }]) {
    const o = document.createElement("option");
    o.value = String(w.coarse_levels); o.textContent = w.label; coarse.appendChild(o);
  }
  coarse.value = "0";
  maxUploadMb = info.max_upload_mb;
  shakePx = info.shake_px || shakePx;
  $("limits").textContent = "Images stay on this computer. Up to " + Math.round(info.max_upload_mb) + " MiB per image.";
}

function setSlider(v) {
  $("after-wrap").style.clipPath = "inset(0 0 0 " + v + "%)";
  $("handle").style.left = v + "%";
}

async function deblur(file) {
  showError("");
  if (file.size > maxUploadMb * 1048576) {  // the server says the same; this saves the upload
    setStatus("failed", 0);
    showError(file.name + ": " + (file.size / 1048576).toFixed(1) + " MiB is over this server's upload limit of " + Math.round(maxUploadMb) + " MiB (--max-upload-mb)");
    return;
  }
  setStatus("uploading " + file.name, 0);
  const url = "/api/jobs?model=" + encodeURIComponent($("model").value) + "&filename=" + encodeURIComponent(file.name)
    + "&coarse_levels=" + encodeURIComponent($("coarse").value || "0")
    + ($("shake").checked ? "&blind=" + String(shakePx) : "");
  const r = await fetch(url, { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } });
  const job = await r.json();
  if (!r.ok) { setStatus("failed", 0); showError(job.error || ("upload failed: HTTP " + r.status)); return; }
  for (;;) {
    const s = await (await fetch("/api/jobs/" + job.id)).json();
    if (s.state === "error" || s.error) { setStatus("failed", 0); showError(s.error); return; }
    const tiles = s.tiles_total ? " (tile " + s.tiles_done + " of " + s.tiles_total + (s.pages > 1 ? ", page " + (s.page + 1) + " of " + s.pages : "") + ")" : "";
    if (s.state === "done") { setStatus("done: " + s.name, 1); break; }
    setStatus(s.state + " " + s.name + tiles, s.progress);
    await new Promise((res) => setTimeout(res, 150));
  }
  const base = "/api/jobs/" + job.id;
  await Promise.all([["before", base + "/before.png"], ["after", base + "/after.png"]].map(([id, src]) =>
    new Promise((res) => { const img = $(id); img.onload = res; img.onerror = res; img.src = src; })));
  const a = $("download");
  a.href = base + "/result";
  a.setAttribute("download", "");
  $("result").hidden = false;
  document.body.dataset.state = "done";
}

async function pump() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const f = queue.shift();
    $("queue").textContent = queue.length ? queue.length + " more waiting" : "";
    document.body.dataset.state = "working";
    try { await deblur(f); } catch (err) { showError(String(err)); }
  }
  busy = false;
}

function add(files) { queue.push(...files); pump(); }

window.addEventListener("DOMContentLoaded", () => {
  loadModels().catch((e) => showError("cannot reach the server: " + e));
  $("file").addEventListener("change", (e) => { add(Array.from(e.target.files)); e.target.value = ""; });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); add(Array.from(e.dataTransfer.files)); });
  $("slider").addEventListener("input", (e) => setSlider(e.target.value));
  setSlider($("slider").value);
});
