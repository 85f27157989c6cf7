// The onboarding page blocks itself on a non-TLS origin: API keys must never travel in clear.
// (The server refuses such submissions too; this stops the employee before they type anything.)
(function () {
  "use strict";
  var script = document.getElementById("onboard-script");
  var allowInsecure = script && script.getAttribute("data-allow-insecure") === "1";
  var secure = window.isSecureContext && window.location.protocol === "https:";
  if (secure || allowInsecure) { return; }
  var warning = document.getElementById("tls-warning");
  if (warning) { warning.hidden = false; }
  document.querySelectorAll("form[data-credentials]").forEach(function (form) {
    form.setAttribute("aria-disabled", "true");
    form.querySelectorAll("input, textarea, select, button").forEach(function (el) { el.disabled = true; });
    form.addEventListener("submit", function (event) { event.preventDefault(); });
  });
})();
