// breastus web page: upload an image to /v1/predict and show the label, probabilities, heatmap and outline.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  let imageUrl = null;

  function headers() {
    const token = $("token").value.trim();
    return token ? { Authorization: "Bearer " + token } : {};
  }

  function setStatus(text, isError) {
    $("status").textContent = text;
    $("status").classList.toggle("error", Boolean(isError));
  }

  async function detail(response) {
    try {
      const body = await response.json();
      return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (e) {
      return response.statusText;
    }
  }

  async function loadModel() {
    const response = await fetch("/v1/model", { headers: headers() });
    if (!response.ok) {
      $("model").textContent = "Model description unavailable (" + response.status + ": " + (await detail(response)) + ").";
      return;
    }
    const model = await response.json();
    $("model").textContent = "Model " + model.name + (model.version ? " (version " + model.version + ")" : "") +
      ", classes " + model.classes.join(", ") + ", input " + model.image_size + " px.";
    if (model.notice) {
      $("notice").lastChild.textContent = " " + model.notice;
    }
  }

  function showBars(probabilities, label) {
    const list = $("bars");
    list.replaceChildren();
    for (const [name, p] of Object.entries(probabilities)) {
      const item = document.createElement("li");
      item.dataset.class = name;
      item.dataset.probability = String(p);
      if (name === label) item.classList.add("top");
      const text = document.createElement("span");
      text.className = "name";
      text.textContent = name;
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = (100 * p).toFixed(1) + " %";
      const bar = document.createElement("div");
      bar.className = "bar";
      const fill = document.createElement("div");
      fill.style.width = (100 * p).toFixed(2) + "%";
      bar.appendChild(fill);
      item.append(text, value, bar);
      list.appendChild(item);
    }
  }

  function showOutline(outline, width, height) {
    const svg = $("outline");
    svg.replaceChildren();
    if (!outline || outline.length === 0) {
      svg.hidden = true;
      return;
    }
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("preserveAspectRatio", "none");
    for (const line of outline) {
      const poly = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
      poly.setAttribute("points", line.map((p) => p[0] + "," + p[1]).join(" "));
      poly.setAttribute("fill", "none");
      poly.setAttribute("stroke", "#00ff66");
      poly.setAttribute("stroke-width", String(Math.max(1.5, width / 300)));
      svg.appendChild(poly);
    }
    svg.hidden = false;
  }

  function showLesion(result) {
    const parts = [];
    if (typeof result.lesion_probability === "number") parts.push("lesion probability " + (100 * result.lesion_probability).toFixed(1) + " %");
    if (typeof result.area === "number") parts.push("area " + result.area.toFixed(1));
    $("lesion").textContent = parts.join(", ");
    $("lesion").hidden = parts.length === 0;
  }

  async function classify(file) {
    if (!file) return;
    setStatus("Classifying " + file.size + " bytes\u2026", false);
    $("result").hidden = true;
    const form = new FormData();
    form.append("file", file);
    const query = new URLSearchParams({
      heatmap: String($("want-heatmap").checked),
      outline: String($("want-outline").checked),
    });
    let response;
    try {
      response = await fetch("/v1/predict?" + query, { method: "POST", body: form, headers: headers() });
    } catch (e) {
      setStatus("The service cannot be reached: " + e, true);
      return;
    }
    if (!response.ok) {
      setStatus("Error " + response.status + ": " + (await detail(response)), true);
      return;
    }
    const result = await response.json();
    if (imageUrl) URL.revokeObjectURL(imageUrl);
    imageUrl = URL.createObjectURL(file);
    $("image").src = imageUrl;  // a DICOM file cannot be shown itself; the overlay then shows the image
    $("label").textContent = result.label;
    $("label").dataset.label = result.label;
    $("model-ref").textContent = result.model.name + (result.model.version ? " " + result.model.version : "");
    showBars(result.probabilities, result.label);
    showLesion(result);
    const overlay = $("overlay");
    if (result.heatmap) {
      overlay.src = result.heatmap;
      overlay.hidden = false;
    } else {
      overlay.removeAttribute("src");
      overlay.hidden = true;
    }
    showOutline(result.outline, result.width, result.height);
    $("result").hidden = false;
    setStatus("Done.", false);
  }

  function setUp() {
    $("file").addEventListener("change", (event) => classify(event.target.files[0]));
    const drop = $("drop");
    drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      classify(event.dataTransfer.files[0]);
    });
    $("token").addEventListener("change", loadModel);
    loadModel();
  }

  document.addEventListener("DOMContentLoaded", setUp);
})();
