/* Kefu pages: customer lookup and creation on the intake form, drafts kept while typing, the diagram. */
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content;
  var i18nNode = document.getElementById("intake-i18n");
  var t = i18nNode ? JSON.parse(i18nNode.textContent) : {};

  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text) n.textContent = text;
    return n;
  }
  function setField(id, value) {
    var input = document.querySelector('[name="' + id + '"]');
    if (input && value) { input.value = value; input.dispatchEvent(new Event("input", {bubbles: true})); }
  }

  /* ---- customer lookup (intake) */
  var q = document.getElementById("customer-q");
  if (q) {
    var results = document.getElementById("customer-results");
    var chosen = document.getElementById("customer-chosen");
    var hidden = document.getElementById("kefu_customer_id");
    var vipTemplate = document.getElementById("t-vip");
    var timer = null, seq = 0;

    var choose = function (c) {
      hidden.value = c.id;
      document.getElementById("chosen-name").textContent = c.name;
      document.getElementById("chosen-phone").textContent = c.phone || "";
      document.getElementById("chosen-vip").hidden = !c.vip;
      chosen.hidden = false;
      results.textContent = "";
      setField("customer_name", c.name);
      setField("contact_phone", c.phone);
      setField("region", c.region);
      setField("location", c.address);
    };
    document.getElementById("chosen-clear").addEventListener("click", function () {
      hidden.value = ""; chosen.hidden = true;
    });
    var render = function (list) {
      results.textContent = "";
      if (!list.length) { results.appendChild(el("li", "muted none", t.none)); return; }
      list.forEach(function (c) {
        var li = el("li", "hit");
        li.tabIndex = 0;
        li.dataset.customer = c.id;
        var name = el("div", "name", c.name + " ");
        if (c.vip) name.appendChild(vipTemplate.content.cloneNode(true));
        li.appendChild(name);
        li.appendChild(el("div", "sub", [c.phone, c.company, c.region].filter(Boolean).join(" · ")));
        li.addEventListener("click", function () { choose(c); });
        li.addEventListener("keydown", function (e) { if (e.key === "Enter") { e.preventDefault(); choose(c); } });
        results.appendChild(li);
      });
    };
    q.addEventListener("input", function () {
      clearTimeout(timer);
      var text = q.value.trim();
      if (!text) { results.textContent = ""; return; }
      timer = setTimeout(function () {
        var mine = ++seq;
        fetch("/api/customers?q=" + encodeURIComponent(text), {credentials: "same-origin", headers: {Accept: "application/json"}})
          .then(function (r) { if (!r.ok) throw r; return r.json(); })
          .then(function (list) { if (mine === seq) render(list); })
          .catch(function () { results.textContent = ""; results.appendChild(el("li", "err", t.failed)); });
      }, 200);
    });

    var save = document.getElementById("nc-save");
    save.addEventListener("click", function () {
      var err = document.getElementById("nc-name-err");
      var body = {
        name: document.getElementById("nc-name").value.trim(),
        phone: document.getElementById("nc-phone").value.trim(),
        company: document.getElementById("nc-company").value.trim(),
        address: document.getElementById("nc-address").value.trim(),
        vip: document.getElementById("nc-vip").checked
      };
      err.hidden = true;
      if (!body.name) { err.textContent = t.name_required; err.hidden = false; return; }
      fetch("/api/customers", {method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json"},
        body: JSON.stringify(body)})
        .then(function (r) { return r.json().then(function (j) { return {ok: r.ok, body: j}; }); })
        .then(function (res) {
          if (!res.ok) {
            var errors = (res.body.error && res.body.error.errors) || {};
            err.textContent = errors.name || (res.body.error && res.body.error.message) || t.failed;
            err.hidden = false; return;
          }
          choose(res.body);
          document.getElementById("new-customer").open = false;
          var warning = document.getElementById("customer-warning");  /* same phone as a known customer */
          if (warning) { warning.textContent = res.body.warning || ""; warning.hidden = !res.body.warning; }
        })
        .catch(function () { err.textContent = t.failed; err.hidden = false; });
    });
  }

  /* ---- drafts: what an agent types survives a reload or a lost connection until the form is accepted.
     They are kept per user (the next person on this browser never sees them); session.js removes them at
     logout. */
  var DRAFTS = "kefu-draft:", DONE = "kefu-draft-submitted";
  if (document.querySelector(".flash.success") && sessionStorage.getItem(DONE)) {
    localStorage.removeItem(sessionStorage.getItem(DONE));
    sessionStorage.removeItem(DONE);
  }
  Array.prototype.forEach.call(document.querySelectorAll("form[data-draft]"), function (form) {
    var key = DRAFTS + document.body.dataset.user + ":" + form.dataset.draft;
    var fields = function () { return Array.prototype.filter.call(form.elements, function (e) { return e.name && e.type !== "hidden"; }); };
    /* untouched: nothing typed (a value the server filled in itself — now, an earlier step's — counts as none) */
    var empty = fields().every(function (e) {
      return (e.type === "radio" || e.type === "checkbox") ? !e.checked : (!e.value || e.hasAttribute("data-auto"));
    });
    var saved = null;
    try { saved = JSON.parse(localStorage.getItem(key) || "null"); } catch (e) { saved = null; }
    if (saved && empty) {
      fields().forEach(function (e) {
        var v = saved[e.name];
        if (v === undefined) return;
        if (e.type === "radio") e.checked = (v === e.value);
        else if (e.type === "checkbox") e.checked = Array.isArray(v) && v.indexOf(e.value) >= 0;
        else e.value = v;
      });
    }
    var store = function () {
      var data = {};
      fields().forEach(function (e) {
        if (e.type === "checkbox") { data[e.name] = data[e.name] || []; if (e.checked) data[e.name].push(e.value); }
        else if (e.type === "radio") { if (e.checked) data[e.name] = e.value; }
        else data[e.name] = e.value;
      });
      localStorage.setItem(key, JSON.stringify(data));
    };
    form.addEventListener("input", store);
    form.addEventListener("change", store);
    form.addEventListener("submit", function () { store(); sessionStorage.setItem(DONE, key); });
  });

  /* ---- the diagram of an instance, current tasks highlighted */
  var diagram = document.getElementById("diagram");
  if (diagram && window.BpmnJS) {
    var split = function (s) { return (s || "").split(",").filter(Boolean); };
    var viewer = new window.BpmnJS({container: diagram});
    fetch(diagram.dataset.xml, {credentials: "same-origin"})
      .then(function (r) { if (!r.ok) throw r; return r.text(); })
      .then(function (xml) { return viewer.importXML(xml); })
      .then(function () {
        var canvas = viewer.get("canvas"), registry = viewer.get("elementRegistry");
        var fit = function () {
          /* fit the width (never the height: a tall page scrolls), not smaller than a readable scale */
          canvas.zoom("fit-viewport");
          var box = canvas.viewbox(), inner = box.inner;
          var scale = Math.max(Math.min(diagram.clientWidth / (inner.width + 40), 1.2), 0.65);
          canvas.zoom(scale);
          var width = diagram.clientWidth / scale, x = inner.x - 20;
          /* a wide diagram: keep the step the ticket waits at in view */
          var focus = split(diagram.dataset.waiting).concat(split(diagram.dataset.current))
            .map(function (id) { return registry.get(id); }).filter(Boolean)[0];
          if (focus && focus.x + focus.width + 60 > x + width) {
            x = Math.min(focus.x + focus.width / 2 - width / 2, inner.x + inner.width + 20 - width);
          }
          var height = diagram.clientHeight / scale, y = inner.y - 20;
          if (focus && focus.y + focus.height + 40 > y + height) {  /* a tall one: the step below the fold too */
            y = Math.min(focus.y + focus.height / 2 - height / 2, inner.y + inner.height + 20 - height);
          }
          canvas.viewbox({x: x, y: y, width: width, height: height});
        };
        fit();
        split(diagram.dataset.done).forEach(function (id) { if (registry.get(id)) canvas.addMarker(id, "done"); });
        split(diagram.dataset.current).forEach(function (id) { if (registry.get(id)) canvas.addMarker(id, "current"); });
        /* waiting timers: "等待回访，至 12月1日" beside the event, naming the step that follows it */
        var overlays = viewer.get("overlays"), days = {};
        var namesEn = diagram.dataset.namesEn ? JSON.parse(diagram.dataset.namesEn) : {};
        (diagram.dataset.waitText || "").split(";").filter(Boolean).forEach(function (pair) {
          var i = pair.indexOf("="); days[pair.slice(0, i)] = pair.slice(i + 1);
        });
        split(diagram.dataset.waiting).forEach(function (id) {
          var el = registry.get(id);
          if (!el) return;
          canvas.addMarker(id, "waiting");
          var next = el.outgoing && el.outgoing[0] && el.outgoing[0].target.businessObject.name || "";
          next = namesEn[next] || next;  /* the English page: the step's English name */
          var badge = document.createElement("div");
          badge.className = "wait-badge";
          badge.textContent = diagram.dataset.waitTemplate.replace("{next}", next).replace("{day}", days[id] || "");
          overlays.add(id, {position: {top: -30, left: -60}, html: badge});
        });
        document.querySelectorAll("[data-zoom]").forEach(function (button) {
          button.addEventListener("click", function () {
            var how = button.dataset.zoom;
            if (how === "fit") { fit(); return; }
            canvas.zoom(canvas.zoom() * (how === "in" ? 1.25 : 0.8), {x: diagram.clientWidth / 2,
                                                                      y: diagram.clientHeight / 2});
          });
        });
        diagram.dataset.rendered = "true";
      })
      .catch(function () { diagram.textContent = diagram.dataset.error; diagram.dataset.rendered = "error"; });
  }
})();
