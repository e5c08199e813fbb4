// The service's page: search with an image, add it to the gallery, page through the gallery, remove items.
// Plain JavaScript against the service's API (its OpenAPI page is /docs); text goes in with textContent only.
"use strict";

const PAGE_SIZE = 24;
const state = { file: null, offset: 0, total: 0 };
const $ = (id) => document.getElementById(id);

function say(text, ok = false) {
  const box = $("message");
  box.textContent = text;
  box.className = ok ? "ok" : "";
  box.hidden = !text;
}

function headers() {
  const key = $("api-key").value.trim();
  sessionStorage.setItem("apiKey", key);
  return key ? { "X-API-Key": key } : {};
}

async function call(method, url, body) {
  const response = await fetch(url, { method, body, headers: method === "GET" ? {} : headers() });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail || data);
    throw new Error(`${response.status}: ${detail}`);
  }
  return data;
}

function card(item, extra) {
  const li = document.createElement("li");
  li.dataset.id = item.id;
  const img = document.createElement("img");
  img.src = `items/${item.id}/image`;
  img.alt = item.label;
  img.loading = "lazy";
  const label = document.createElement("div");
  label.className = "label";
  label.textContent = item.label || "(no label)";
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = extra;
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "remove";
  remove.textContent = "remove";
  remove.addEventListener("click", () => removeItem(item.id));
  li.append(img, label, meta, remove);
  return li;
}

async function showInfo() {
  try {
    const info = await call("GET", "info");
    const unknown = info.threshold === null ? "no threshold for unknown (fe_index calibrate sets one)"
      : `unknown below score ${info.threshold.toFixed(3)}`;
    $("info").textContent = `${info.count} images of ${info.labels} labels; ${unknown}`;
  } catch (error) {
    $("info").textContent = `the gallery cannot be read (${error.message})`;
  }
}

async function search(file) {
  state.file = file;
  $("query").hidden = false;
  $("query-image").src = URL.createObjectURL(file);
  $("query-name").textContent = file.name;
  $("verdict").textContent = "searching…";
  $("results").replaceChildren();
  const form = new FormData();
  form.append("images", file);
  form.append("k", $("k").value || "5");
  try {
    const answer = (await call("POST", "search", form)).results[0];
    if (answer.error) throw new Error(answer.error);
    const verdict = $("verdict");
    verdict.className = answer.unknown ? "unknown" : "";
    verdict.textContent = answer.unknown ? "unknown: nothing in the gallery is close enough"
      : `most like: ${answer.items[0].label}`;
    $("results").replaceChildren(...answer.items.map((item, rank) =>
      card(item, `#${rank + 1} · score ${item.score.toFixed(3)} · id ${item.id}`)));
    say("");
  } catch (error) {
    $("verdict").textContent = "";
    say(`Search failed: ${error.message}`);
  }
}

async function addQuery(event) {
  event.preventDefault();
  if (!state.file) return;
  const form = new FormData();
  form.append("images", state.file);
  form.append("labels", $("label").value.trim());
  try {
    const { ids } = await call("POST", "items", form);
    say(`Added as item ${ids[0]} with the label “${$("label").value.trim()}”.`, true);
    await Promise.all([showInfo(), showGallery()]);
  } catch (error) {
    say(`Adding failed: ${error.message}`);
  }
}

async function removeItem(id) {
  try {
    await call("DELETE", `items/${id}`);
    document.querySelectorAll(`li[data-id="${id}"]`).forEach((li) => li.remove());
    say(`Removed item ${id}.`, true);
    await Promise.all([showInfo(), showGallery()]);
  } catch (error) {
    say(`Removing failed: ${error.message}`);
  }
}

async function showGallery() {
  const query = new URLSearchParams({ offset: state.offset, limit: PAGE_SIZE });
  const label = $("filter").value.trim();
  if (label) query.set("label", label);
  try {
    const page = await call("GET", `items?${query}`);
    state.total = page.total;
    $("gallery-items").replaceChildren(...page.items.map((item) => card(item, `id ${item.id}`)));
    const last = Math.min(state.offset + PAGE_SIZE, page.total);
    $("page").textContent = page.total ? `${state.offset + 1}–${last} of ${page.total}` : "no items";
    $("prev").disabled = state.offset === 0;
    $("next").disabled = last >= page.total;
  } catch (error) {
    say(`The gallery cannot be listed: ${error.message}`);
  }
}

function setUp() {
  $("api-key").value = sessionStorage.getItem("apiKey") || "";
  const drop = $("drop");
  $("file").addEventListener("change", () => $("file").files[0] && search($("file").files[0]));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files[0]) search(event.dataTransfer.files[0]);
  });
  $("add-form").addEventListener("submit", addQuery);
  $("filter-form").addEventListener("submit", (event) => { event.preventDefault(); state.offset = 0; showGallery(); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); showGallery(); });
  $("next").addEventListener("click", () => { state.offset += PAGE_SIZE; showGallery(); });
  showInfo();
  showGallery();
}

document.addEventListener("DOMContentLoaded", setUp);
