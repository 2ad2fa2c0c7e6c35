/* Audit trace: the diagram with the path taken — completed, active, cancelled, timer fired. */
(function () {
  "use strict";
  var el = document.getElementById("trace-diagram");
  if (!el || !window.BpmnJS) return;
  var split = function (s) { return (s || "").split(",").filter(Boolean); };
  var viewer = new window.BpmnJS({container: el});
  fetch(el.dataset.xml, {credentials: "same-origin"})
    .then(function (r) { if (!r.ok) throw r; return r.text(); })
    .then(function (xml) { return viewer.importXML(xml); })
    .then(function () {
      var canvas = viewer.get("canvas"), registry = viewer.get("elementRegistry");
      canvas.zoom("fit-viewport");
      [["completed", "m-completed"], ["cancelled", "m-cancelled"], ["timer", "m-timer"], ["active", "m-active"]]
        .forEach(function (pair) {
          split(el.dataset[pair[0]]).forEach(function (id) { if (registry.get(id)) canvas.addMarker(id, pair[1]); });
        });
      el.dataset.rendered = "true";
    })
    .catch(function () { el.textContent = el.dataset.error; el.dataset.rendered = "error"; });
})();
