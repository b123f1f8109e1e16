// doorkeep console: live updates over server-sent events (no framework, nothing loaded from the network).
"use strict";

function csrfToken() { const m = document.querySelector('meta[name="csrf"]'); return m ? m.content : ""; }

function insertVisit(d) {
  const timeline = document.getElementById("timeline");
  if (!timeline) return;
  const empty = document.getElementById("timeline-empty");
  if (empty) empty.remove();
  const tmp = document.createElement("div");
  tmp.innerHTML = d.html;
  const card = tmp.firstElementChild;
  const old = document.getElementById("visit-" + d.id);
  if (old) { old.replaceWith(card); return; }
  card.classList.add("fresh");
  let day = timeline.querySelector('section.day[data-day="' + d.day + '"]');
  if (!day) {
    day = document.createElement("section");
    day.className = "day"; day.dataset.day = d.day;
    const h = document.createElement("h2"); h.textContent = d.day_label + " ";
    const count = document.createElement("span"); count.className = "muted count"; h.appendChild(count);
    const strip = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    strip.setAttribute("class", "strip"); strip.setAttribute("viewBox", "0 0 1000 14");
    strip.setAttribute("preserveAspectRatio", "none");
    const list = document.createElement("div"); list.className = "visits";
    day.append(h, strip, list);
    const days = Array.from(timeline.querySelectorAll("section.day"));
    const after = days.find(s => s.dataset.day < d.day);
    timeline.insertBefore(day, after || null);
  }
  const list = day.querySelector(".visits");
  const later = Array.from(list.children).find(el => parseFloat(el.dataset.t) < d.t);
  list.insertBefore(card, later || null);
  const count = day.querySelector(".count");
  if (count) count.textContent = "· " + list.children.length;
  const strip = day.querySelector("svg.strip");
  if (strip && d.x !== undefined) {
    const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    r.setAttribute("class", "tick " + d.kind);
    r.setAttribute("x", d.x); r.setAttribute("y", "2"); r.setAttribute("width", "4"); r.setAttribute("height", "10");
    strip.appendChild(r);
  }
}

function updateDevice(d) {
  const dot = document.getElementById("avail-dot");
  if (dot) { dot.className = "dot " + d.availability; dot.title = "device " + d.availability; }
  const wrap = document.getElementById("health-wrap");
  if (wrap) wrap.innerHTML = d.html;
}

function updatePending(d) {
  const b = document.getElementById("pending-badge");
  if (!b) return;
  b.textContent = d.pending || "";
  b.classList.toggle("hidden", !d.pending);
}

if (document.querySelector('meta[name="csrf"]') && csrfToken() && window.EventSource) {
  // The Timeline says which version of the visits it shows: the stream first sends what changed since.
  const tl = document.getElementById("timeline");
  const es = new EventSource("/api/stream" + (tl && tl.dataset.since ? "?since=" + tl.dataset.since : ""));
  es.addEventListener("visit", e => insertVisit(JSON.parse(e.data)));
  es.addEventListener("device", e => updateDevice(JSON.parse(e.data)));
  es.addEventListener("request", e => updatePending(JSON.parse(e.data)));
  es.addEventListener("locked", () => { es.close(); window.location = "/unlock"; });
}

// A thumbnail the device has no snapshot for falls back to the silhouette (no inline handlers: the CSP forbids them).
document.addEventListener("error", e => {
  const img = e.target;
  if (img.tagName === "IMG" && img.closest(".thumb, .pickclip") && !img.src.endsWith("/static/person.svg")) {
    img.src = "/static/person.svg";
  }
}, true);
