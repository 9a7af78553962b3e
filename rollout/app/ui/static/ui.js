// Refresh the rollouts and pools sections in place from /api/live, which
// returns server-rendered (escaped) HTML, so this script builds no markup.
(function () {
  "use strict";
  var every = parseFloat(document.body.dataset.refresh || "2") * 1000;
  function tick() {
    fetch("/api/live", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        document.getElementById("live").innerHTML = data.live;
        document.getElementById("pools").innerHTML = data.pools;
        document.getElementById("updated").textContent = "as of " + data.updated + " UTC";
      })
      .catch(function () { document.getElementById("updated").textContent = "(not updating)"; })
      .finally(function () { window.setTimeout(tick, every); });
  }
  window.setTimeout(tick, every);
})();
