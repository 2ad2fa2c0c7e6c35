/* The inbox from the keyboard (issue 20): j or ↓ next task, k or ↑ previous, Enter opens it, c claims it.
   Keys typed into a field or with Ctrl/Alt/Meta are left alone. The selection survives a live refresh. */
(function () {
  "use strict";
  var selected = null;  // the selected row's task id
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr.task-row")); }
  function current() {
    var all = rows();
    for (var i = 0; i < all.length; i++) if (all[i].classList.contains("selected")) return i;
    return -1;
  }
  function select(i) {
    var all = rows();
    if (!all.length) return;
    i = Math.max(0, Math.min(all.length - 1, i));
    all.forEach(function (r) { r.classList.remove("selected"); r.removeAttribute("aria-selected"); });
    var row = all[i];
    row.classList.add("selected");
    row.setAttribute("aria-selected", "true");
    selected = row.getAttribute("data-task");
    row.scrollIntoView({block: "nearest"});
  }
  document.addEventListener("kefu:refreshed", function () {
    if (!selected) return;
    var all = rows();
    for (var i = 0; i < all.length; i++) if (all[i].getAttribute("data-task") === selected) { select(i); return; }
  });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.altKey || e.metaKey) return;
    var t = e.target;
    if (t && t.closest && t.closest("input, select, textarea, [contenteditable]")) return;
    var i = current(), row = rows()[i];
    if (e.key === "j" || e.key === "ArrowDown") { select(i + 1); e.preventDefault(); }
    else if (e.key === "k" || e.key === "ArrowUp") { select(i < 0 ? 0 : i - 1); e.preventDefault(); }
    else if (e.key === "Enter" && row) {
      var link = row.querySelector("a[href*='/tasks/']");
      if (link) { e.preventDefault(); location.href = link.href; }
    } else if (e.key === "c" && row) {
      var claim = row.querySelector("form[action$='/claim']");
      if (claim) { e.preventDefault(); claim.submit(); }
    }
  });
})();
