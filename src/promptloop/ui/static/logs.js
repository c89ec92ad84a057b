// The logs table: a click anywhere on a row opens its log (the time cell holds the real link,
// for keyboards and for opening in a new tab).
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var row = event.target.closest && event.target.closest("table.logs tr[data-href]");
    if (!row || event.target.closest("a, button, input, select, textarea")) { return; }
    if (window.getSelection && String(window.getSelection())) { return; }  // selecting text
    window.location.href = row.getAttribute("data-href");
  });
})();
