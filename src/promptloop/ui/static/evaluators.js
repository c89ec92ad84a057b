// The evaluator editor shows only the fields of the chosen kind and built-in (with JS off every
// group stays visible, and the server reads only the chosen one's).
(function () {
  "use strict";
  function sync(root) {
    var form = root.querySelector ? root.querySelector(".evaluator-form") : null;
    if (!form) { return; }
    var checked = form.querySelector('input[name="kind"]:checked');
    var kind = checked ? checked.value : "";
    form.querySelectorAll("[data-kinds]").forEach(function (group) {
      group.hidden = kind !== "" && group.getAttribute("data-kinds").split(" ").indexOf(kind) < 0;
    });
    var select = form.querySelector('select[name="builtin"]');
    var builtin = select ? select.value : "";
    form.querySelectorAll("[data-builtin]").forEach(function (group) {
      group.hidden = group.getAttribute("data-builtin") !== builtin;
    });
  }
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target && (target.name === "kind" || target.name === "builtin")) { sync(document); }
  });
  document.addEventListener("DOMContentLoaded", function () { sync(document); });
  document.addEventListener("htmx:afterSettle", function () { sync(document); });
})();
