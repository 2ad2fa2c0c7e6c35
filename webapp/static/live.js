/* Live pages (issue 20): one EventSource per tab. On a change the page refetches itself and swaps the parts
   marked data-live (the inbox's queues, a ticket's tasks and timeline); the 待办 badge shows my ready tasks;
   countdowns tick; alerts (a new major complaint, an overdue warning) show at the top of any page, with an
   optional sound (off by default; the choice is kept in localStorage). No inline script: the CSP allows files
   from this site only; the page's words come in the JSON block #live-config. */
(function () {
  "use strict";
  var cfgNode = document.getElementById("live-config");
  if (!cfgNode) return;
  var cfg = JSON.parse(cfgNode.textContent), T = cfg.text;
  var skew = cfg.now - Date.now();  // the service's clock (a demo clock may run ahead of this computer's)
  var body = document.body;
  var NEAR = 4 * 3600;

  function fmt(tpl, vals) { return tpl.replace(/\{(\w+)\}/g, function (_m, k) { return vals[k]; }); }
  function words(seconds) {
    var mins = Math.floor(Math.abs(seconds) / 60);
    var d = Math.floor(mins / 1440), h = Math.floor((mins % 1440) / 60), m = mins % 60;
    if (d) return fmt(T.dh, {d: d, h: h});
    if (h) return fmt(T.hm, {h: h, m: m});
    return fmt(T.m, {m: m});
  }

  /* ---- countdowns: every [data-due] holds its due time; its .left says what remains */
  function tick() {
    var now = Date.now() + skew;
    Array.prototype.forEach.call(document.querySelectorAll("[data-due]"), function (n) {
      var left = (Date.parse(n.getAttribute("data-due")) - now) / 1000;
      if (isNaN(left)) return;
      var text = left < 0 ? fmt(T.over, {t: words(left)}) : fmt(T.left, {t: words(left)});
      var out = n.querySelector(".left");
      if (out && out.textContent !== text) out.textContent = text;
      var css = left < 0 ? "overdue" : left <= NEAR ? "near" : "ok";
      [n, n.closest("tr.task-row")].forEach(function (x) {
        if (!x) return;
        ["overdue", "near", "ok"].forEach(function (c) { x.classList.toggle(c, c === css); });
      });
    });
  }
  tick();
  setInterval(tick, 5000);

  /* ---- the 待办 badge */
  var badge = document.getElementById("todo-badge");
  function count(n) {
    if (!badge || typeof n !== "number") return;
    badge.textContent = String(n);
    badge.hidden = n === 0;
  }

  /* ---- refetch this page and swap its live parts */
  var inflight = false, again = false;
  function refresh() {
    if (inflight) { again = true; return; }
    inflight = true;
    fetch(location.href, {headers: {"X-Kefu-Live": "1"}, credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html) apply(new DOMParser().parseFromString(html, "text/html")); })
      .catch(function () {})
      .then(function () {
        inflight = false;
        if (again) { again = false; setTimeout(refresh, 300); }
      });
  }
  function apply(doc) {
    Array.prototype.forEach.call(document.querySelectorAll("[data-live]"), function (old) {
      var fresh = doc.querySelector('[data-live="' + old.getAttribute("data-live") + '"]');
      if (!fresh) return;
      var a = document.activeElement;
      if (a && old.contains(a) && a.matches("input, select, textarea")) return;  // not under someone's hands
      old.replaceWith(document.importNode(fresh, true));
    });
    var was = body.getAttribute("data-live-state"), now = doc.body.getAttribute("data-live-state");
    if (was && now && was !== now) notice();
    tick();
    document.dispatchEvent(new CustomEvent("kefu:refreshed"));
  }
  function notice() {
    if (document.getElementById("live-updated")) return;
    var box = document.getElementById("live-alerts");
    var n = document.createElement("div");
    n.id = "live-updated";
    n.className = "live-alert updated";
    n.setAttribute("role", "status");
    n.appendChild(document.createTextNode(T.updated + " "));
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = T.reload;
    b.addEventListener("click", function () { location.reload(); });
    n.appendChild(b);
    box.appendChild(n);
  }

  /* ---- alerts and the optional sound */
  var SOUND = "kefu-sound", audio = null, shown = {};
  var toggle = document.getElementById("sound-toggle");
  function soundOn() { return localStorage.getItem(SOUND) === "on"; }
  function label() { if (toggle) { toggle.textContent = soundOn() ? T.sound_on : T.sound_off; toggle.setAttribute("aria-pressed", String(soundOn())); } }
  if (toggle) {
    toggle.hidden = false;
    label();
    toggle.addEventListener("click", function () {
      localStorage.setItem(SOUND, soundOn() ? "off" : "on");
      label();
      if (soundOn()) beep();  // a click lets the page play sound from now on
    });
  }
  function beep() {
    if (!soundOn()) return;
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      if (audio.state === "suspended") audio.resume();
      var o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = 880;
      g.gain.value = 0.15;
      o.connect(g); g.connect(audio.destination);
      o.start(); o.stop(audio.currentTime + 0.3);
      body.setAttribute("data-sounded", String((+body.getAttribute("data-sounded") || 0) + 1));
    } catch (e) { /* no sound on this browser */ }
  }
  /* alerts stay on the pages of this tab until dismissed (sessionStorage), so moving on does not lose one */
  var KEPT = "kefu-alerts";
  function kept() { try { return JSON.parse(sessionStorage.getItem(KEPT) || "[]"); } catch (e) { return []; } }
  function keep(list) { try { sessionStorage.setItem(KEPT, JSON.stringify(list.slice(-10))); } catch (e) { /* full */ } }
  function alert(a, quiet) {
    var key = a.kind + ":" + a.ticket_no + ":" + (a.task || "");
    if (shown[key]) return;
    shown[key] = true;
    if (!quiet) keep(kept().filter(function (x) { return x.key !== key; }).concat([{key: key, a: a}]));
    var box = document.getElementById("live-alerts");
    var n = document.createElement("div");
    n.className = "live-alert " + a.kind;
    n.setAttribute("role", "alert");
    n.setAttribute("data-ticket", a.ticket_no);
    var strong = document.createElement("strong");
    strong.textContent = T[a.kind] || a.kind;
    n.appendChild(strong);
    n.appendChild(document.createTextNode(" " + a.ticket_no + (a.task ? " · " + a.task : "") + " "));
    var link = document.createElement("a");
    link.href = cfg.ticket_url.replace("__TICKET__", encodeURIComponent(a.ticket_no));
    link.textContent = T.open;
    n.appendChild(link);
    var close = document.createElement("button");
    close.type = "button";
    close.className = "link";
    close.textContent = T.dismiss;
    close.addEventListener("click", function () {
      n.remove();
      keep(kept().filter(function (x) { return x.key !== key; }));
    });
    n.appendChild(close);
    box.appendChild(n);
    if (!quiet) beep();
  }
  kept().forEach(function (x) { alert(x.a, true); });

  /* ---- the stream */
  if (!window.EventSource) return;
  var ticket = body.getAttribute("data-live-ticket");
  var page = body.getAttribute("data-live-page");
  function changed(d) {
    count(d.count);
    (d.alerts || []).forEach(alert);
    var tickets = d.tickets || [];
    if (!tickets.length) return;
    if (page === "inbox" || (ticket && tickets.indexOf(ticket) >= 0)) refresh();
  }
  var es = new EventSource(cfg.events_url);
  es.addEventListener("hello", function (e) { changed(JSON.parse(e.data)); });
  es.addEventListener("change", function (e) { changed(JSON.parse(e.data)); });
  body.setAttribute("data-live-stream", "on");
  window.addEventListener("pagehide", function () { es.close(); });
})();
