/* Every page: at logout the drafts kept in this browser (kefu.js) are removed, so the next person on this
   browser finds none; print buttons. No inline handlers: the Content-Security-Policy runs scripts from files. */
(function () {
  "use strict";
  var logout = document.getElementById("logout-form");
  if (logout) {
    logout.addEventListener("submit", function () {
      for (var i = localStorage.length - 1; i >= 0; i--) {
        var k = localStorage.key(i);
        if (k && k.indexOf("kefu-draft:") === 0) localStorage.removeItem(k);
      }
      sessionStorage.removeItem("kefu-draft-submitted");
      sessionStorage.removeItem("kefu-alerts");
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("[data-print]"), function (b) {
    b.addEventListener("click", function () { window.print(); });
  });
})();
