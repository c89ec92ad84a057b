// promptloop's small page behaviour: htmx sends the session's CSRF token with every request
// that changes data, server errors are reported in the page's #flash area, and buttons marked
// data-confirm ask before they act.
(function () {
  "use strict";
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) { event.detail.headers["X-CSRF-Token"] = meta.content; }
  });
  document.addEventListener("htmx:responseError", function (event) {
    var flash = document.getElementById("flash");
    if (!flash) { return; }
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    flash.innerHTML = "";
    var p = document.createElement("p");
    p.className = "error-box";
    p.setAttribute("role", "alert");
    p.textContent = "The server could not do that (HTTP " + status + "). Nothing was changed; try again, or reload the page.";
    flash.appendChild(p);
  });
  document.addEventListener("htmx:sendError", function () {
    var flash = document.getElementById("flash");
    if (flash) { flash.innerHTML = '<p class="error-box" role="alert">The server cannot be reached. Nothing was changed.</p>'; }
  });
  // Plain forms (no htmx) with data-confirm ask too; htmx forms use hx-confirm, and a form
  // with both asks once.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.getAttribute || form.hasAttribute("hx-confirm")) { return; }
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  }, true);
})();
