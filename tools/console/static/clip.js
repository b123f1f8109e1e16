// Clip page: wait for the console to fetch + open the clip, then play it (the MP4 is served from memory).
"use strict";
(function () {
  const root = document.getElementById("clip");
  if (!root) return;
  const id = root.dataset.clip;
  const video = document.getElementById("player");
  const bar = document.getElementById("fetch-bar");
  const text = document.getElementById("fetch-text");
  const box = document.getElementById("fetching");
  function poll() {
    fetch("/api/clip/" + encodeURIComponent(id), {credentials: "same-origin"}).then(r => {
      if (r.status === 401) { window.location = "/unlock"; return null; }
      return r.json();
    }).then(s => {
      if (!s) return;
      if (s.state === "ready") {
        document.getElementById("facts").innerHTML = s.facts_html;
        box.classList.add("hidden");
        document.getElementById("download").classList.remove("hidden");
        video.src = "/clip/" + encodeURIComponent(id) + "/video.mp4";
        video.play().catch(() => {});
        return;
      }
      if (s.state === "failed") { text.textContent = "Could not open this clip: " + s.error; box.classList.add("failed"); return; }
      if (s.total) {
        bar.value = s.done / s.total;
        text.textContent = "Fetching the encrypted clip… " + Math.round(s.done / 1e5) / 10 + " of " + Math.round(s.total / 1e5) / 10 + " MB";
      }
      setTimeout(poll, 250);
    }).catch(() => setTimeout(poll, 1000));
  }
  poll();
})();
