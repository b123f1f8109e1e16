// Settings: draw privacy masks and zones over the camera view (normalised 0..1 points, origin top left, as in
// docs/config.md), then send them with the thresholds to the console, which signs and pushes the configuration.
"use strict";
(function () {
  const root = document.getElementById("settings");
  if (!root) return;
  const SVG = "http://www.w3.org/2000/svg";
  const cfg = JSON.parse(root.dataset.config);
  const state = {masks: cfg.masks || [], zones: cfg.zones || [], drawing: null};
  const overlay = document.getElementById("overlay");
  const $ = id => document.getElementById(id);
  const round = v => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;

  for (const k of ["threshold", "end_after_s", "max_age_days", "max_gb"]) $(k).value = cfg[k];
  const showThreshold = () => { $("threshold-out").textContent = Math.round($("threshold").value * 100) + " %"; };
  $("threshold").addEventListener("input", showThreshold); showThreshold();

  function el(name, attrs, parent) {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    parent.appendChild(e); return e;
  }
  const pts = poly => poly.map(p => (p[0] * 1000).toFixed(1) + "," + (p[1] * 1000).toFixed(1)).join(" ");

  // A mask the device has now that the page no longer lists is a removal, which the device refuses unless the
  // owner signs it on purpose (docs/config.md): the page asks for that tick.
  const applied = (cfg.masks || []).map(m => ({name: m.name, key: JSON.stringify(m.polygon)}));
  function removedMasks() {
    const kept = new Set(state.masks.map(m => JSON.stringify(m.polygon)));
    return applied.filter(m => !kept.has(m.key)).map(m => m.name);
  }
  function showRemoval() {
    const gone = removedMasks();
    $("removal").classList.toggle("hidden", !gone.length);
    $("removed-names").textContent = gone.length ? "(" + gone.join(", ") + ")" : "";
    if (!gone.length) $("allow-removal").checked = false;
  }

  function draw() { drawOverlay(); list("masks"); list("zones"); showRemoval(); }

  function drawOverlay() {
    overlay.replaceChildren();
    for (const kind of ["zones", "masks"]) {
      state[kind].forEach(s => {
        el("polygon", {points: pts(s.polygon), class: kind.slice(0, -1)}, overlay);
        const cx = s.polygon.reduce((a, p) => a + p[0], 0) / s.polygon.length;
        const cy = s.polygon.reduce((a, p) => a + p[1], 0) / s.polygon.length;
        el("text", {x: cx * 1000, y: cy * 1000, "text-anchor": "middle"}, overlay).textContent = s.name;
      });
    }
    if (state.drawing) {
      el("polyline", {points: pts(state.drawing.polygon), class: "drawing"}, overlay);
      state.drawing.polygon.forEach(p => el("circle", {cx: p[0] * 1000, cy: p[1] * 1000, r: 7}, overlay));
    }
    $("finish").disabled = !(state.drawing && state.drawing.polygon.length >= 3);
    $("cancel").disabled = !state.drawing;
  }

  function list(kind) {
    const ul = $(kind + "-list");
    ul.replaceChildren();
    state[kind].forEach((s, i) => {
      const li = document.createElement("li");
      const sw = document.createElement("span"); sw.className = "swatch " + kind.slice(0, -1);
      const name = document.createElement("input"); name.type = "text"; name.value = s.name; name.maxLength = 20;
      name.addEventListener("input", () => { s.name = name.value; drawOverlay(); });
      const del = document.createElement("button"); del.type = "button"; del.className = "secondary"; del.textContent = "Remove";
      del.addEventListener("click", () => { state[kind].splice(i, 1); draw(); });
      li.append(sw, name, del); ul.appendChild(li);
    });
    if (!state[kind].length) { const li = document.createElement("li"); li.className = "muted small"; li.textContent = "none"; ul.appendChild(li); }
  }

  function start(kind) { state.drawing = {kind: kind, polygon: []}; $("hint").textContent = "Click the corners of the " + kind.slice(0, -1) + "; then Finish."; draw(); }
  function finish() {
    const d = state.drawing;
    if (!d || d.polygon.length < 3) return;
    const label = d.kind === "masks" ? "mask " : "zone ";
    state[d.kind].push({name: label + (state[d.kind].length + 1), polygon: d.polygon});
    state.drawing = null; $("hint").textContent = "Added. Name it on the right, then sign and send."; draw();
  }
  $("draw-mask").addEventListener("click", () => start("masks"));
  $("draw-zone").addEventListener("click", () => start("zones"));
  $("finish").addEventListener("click", finish);
  $("cancel").addEventListener("click", () => { state.drawing = null; draw(); });
  overlay.addEventListener("click", e => {
    if (!state.drawing) return;
    const r = overlay.getBoundingClientRect();
    state.drawing.polygon.push([round((e.clientX - r.left) / r.width), round((e.clientY - r.top) / r.height)]);
    drawOverlay();
  });
  overlay.addEventListener("dblclick", e => { e.preventDefault(); finish(); });

  function refreshView() { $("view").src = "/settings/view.jpg?t=" + Date.now(); }
  $("refresh-view").addEventListener("click", refreshView);

  $("settings-form").addEventListener("submit", e => {
    e.preventDefault();
    const body = {masks: state.masks, zones: state.zones, threshold: parseFloat($("threshold").value),
      end_after_s: parseFloat($("end_after_s").value), max_age_days: parseFloat($("max_age_days").value),
      max_gb: parseFloat($("max_gb").value), allow_mask_removal: removedMasks().length > 0 && $("allow-removal").checked};
    if ($("save").disabled) return;
    const v = $("verdict"); v.className = "verdict"; v.textContent = "Signing and sending…"; $("save").disabled = true;
    fetch("/settings", {method: "POST", credentials: "same-origin", body: JSON.stringify(body),
      headers: {"Content-Type": "application/json", "X-CSRF-Token": document.querySelector('meta[name="csrf"]').content}})
      .then(r => r.status === 401 ? (window.location = "/unlock") : r.json()).then(res => {
        $("save").disabled = false;
        if (!res) return;
        v.className = "verdict " + (res.ok ? "ok" : "bad");
        v.textContent = res.ok ? "✔ The device applied configuration #" + res.counter + " (" + (res.changed || []).length + " settings changed)."
                               : "✘ The device refused it: " + res.reason + (res.detail ? " — " + res.detail : "");
        if (res.ok) {
          $("hint").textContent = "Sent and applied; the picture refreshes in a moment with the device's new view.";
          setTimeout(refreshView, 2500);
        }
      }).catch(err => { $("save").disabled = false; v.className = "verdict bad"; v.textContent = "✘ " + err; });
  });
  draw();
})();
