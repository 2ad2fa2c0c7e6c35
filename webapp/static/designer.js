/* The process modeler: bpmn-js with the Camunda 7 properties panel (vendored bundle), the check before deploy
   (lint findings marked on their elements, the test run per path) and the deploy of a new version. */
(function () {
  "use strict";
  var root = document.getElementById("designer");
  if (!root) return;
  var t = JSON.parse(document.getElementById("designer-i18n").textContent);
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content;
  var statusLine = document.getElementById("designer-status");
  var lintBox = document.getElementById("lint-results");
  var runBox = document.getElementById("testrun-results");
  var deployBtn = document.getElementById("btn-deploy");
  var checkBtn = document.getElementById("btn-check");
  var baseVersion = root.dataset.baseVersion;
  var marked = [];

  function fmt(text, n) { return text.replace("{n}", n); }
  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = text;
    return n;
  }
  function status(text, cls) { statusLine.textContent = text || ""; statusLine.className = "status-line " + (cls || ""); }

  var K = window.KefuModeler;
  if (!K) { status(t.importFailed, "err"); return; }
  /* The modeler's own words (palette, properties panel) in the page's language. */
  var panelWords = JSON.parse((document.getElementById("panel-i18n") || {}).textContent || "{}");
  var translateModule = {translate: ["value", function (template, replacements) {
    replacements = replacements || {};
    return (panelWords[template] || template).replace(/{([^}]+)}/g, function (all, key) {
      return replacements[key] !== undefined ? replacements[key] : all;
    });
  }]};
  var modeler = new K.BpmnModeler({
    container: "#canvas",
    propertiesPanel: {parent: "#properties"},
    additionalModules: [K.BpmnPropertiesPanelModule, K.BpmnPropertiesProviderModule,
      K.CamundaPlatformPropertiesProviderModule, K.CamundaBehaviorsModule, translateModule],
    moddleExtensions: {camunda: K.camundaModdle}
  });
  window.kefuModeler = modeler;  // for the browser tests and the console
  var dirty = false;

  function elementExists(id) { return id && modeler.get("elementRegistry").get(id); }
  function clearMarks() {
    var canvas = modeler.get("canvas");
    marked.forEach(function (m) { if (elementExists(m[0])) canvas.removeMarker(m[0], m[1]); });
    marked = [];
  }
  function mark(id, severity) {
    if (!elementExists(id)) return;
    var cls = severity === "error" ? "lint-error" : "lint-warning";
    modeler.get("canvas").addMarker(id, cls);
    marked.push([id, cls]);
  }
  function focusElement(id) {
    var shape = elementExists(id);
    if (!shape) return;
    modeler.get("selection").select(shape);
    try { modeler.get("canvas").scrollToElement(shape); } catch (e) { /* older canvas without it */ }
  }
  function wireFindings(container) {
    clearMarks();
    container.querySelectorAll("li.finding").forEach(function (li) {
      var id = li.dataset.element;
      mark(id, li.classList.contains("error") ? "error" : "warning");
      if (elementExists(id)) {
        li.classList.add("linked");
        li.tabIndex = 0;
        li.addEventListener("click", function () { focusElement(id); });
        li.addEventListener("keydown", function (e) { if (e.key === "Enter") focusElement(id); });
      }
    });
  }

  function renderFindings(lint) {
    lintBox.textContent = "";
    if (!lint.findings.length) { lintBox.appendChild(el("p", "ok", t.ok)); wireFindings(lintBox); return; }
    var ul = el("ul", "findings");
    lint.findings.forEach(function (f) {
      var li = el("li", "finding " + f.severity);
      li.dataset.element = f.element || "";
      li.appendChild(el("span", "sev", f.severity === "error" ? t.error : t.warning));
      if (f.element) { li.appendChild(document.createTextNode(" ")); li.appendChild(el("code", "el", f.element)); }
      if (f.line) li.appendChild(el("span", "muted small", " " + fmt(t.line, f.line)));
      li.appendChild(el("span", "text", " " + f.text));
      ul.appendChild(li);
    });
    lintBox.appendChild(ul);
    wireFindings(lintBox);
  }

  function choiceText(choice) {
    var keys = Object.keys(choice || {});
    if (!keys.length) return t.baseline;
    return keys.map(function (k) { return k + " = " + JSON.stringify(choice[k]); }).join(", ");
  }
  function renderRuns(runs, lint) {
    runBox.textContent = "";
    runBox.appendChild(el("h3", null, t.testrun));
    if (!runs) { runBox.appendChild(el("p", "muted", t.noTestrun)); return; }
    runs.forEach(function (r) {
      var sec = el("div", "run " + (r.ok ? "ok" : "failed"));
      sec.dataset.process = r.process_id;
      sec.appendChild(el("h4", null, r.process_id + " · " + (r.ok ? t.testrunOk : t.testrunFailed)));
      var ol = el("ol", "paths");
      (r.paths || []).forEach(function (p) {
        var li = el("li", "path " + (p.failure ? "failed" : "ok"));
        li.appendChild(el("div", "choice", t.choice + ": " + choiceText(p.choice)));
        li.appendChild(el("div", "outcome", p.failure ? t.failure + ": " + p.failure + (p.failed_at ? " (" + t.at + " " + p.failed_at + ")" : "")
          : (p.completed ? t.completed : t.notCompleted)));
        if (p.failed_at) mark(p.failed_at, "error");
        // step names as the diagram gives them (the id where a step has no name)
        li.appendChild(el("div", "steps muted small", t.steps + ": " + (p.step_names || p.steps || []).join(" → ")));
        if (p.boundary) li.appendChild(el("div", "muted small", fmt(t.boundaryRun, p.boundary)));
        if (p.timers_fired && p.timers_fired.length) li.appendChild(el("div", "muted small", t.timers + ": " + p.timers_fired.join(", ")));
        ol.appendChild(li);
      });
      sec.appendChild(ol);
      if (r.unreached && r.unreached.length) {
        var gates = r.unreached.filter(function (u) { return u.gateway; });
        var events = r.unreached.filter(function (u) { return u.boundary; });
        if (gates.length) sec.appendChild(el("div", "unreached muted small", t.unreached + ": " + gates.map(function (u) {
          return u.gateway + " → " + u.target + " (" + u.flow + ")"; }).join("; ")));
        if (events.length) sec.appendChild(el("div", "unreached muted small", t.neverFired + ": " + events.map(function (u) {
          return u.boundary + " (" + (u.attached_to || "?") + ")"; }).join("; ")));
      }
      runBox.appendChild(sec);
    });
  }

  function post(url, body) {
    return fetch(url, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify(body)}).then(function (r) {
        return r.json().catch(function () { return {error: {message: t.failed}}; }).then(function (j) { j._status = r.status; return j; });
      });
  }
  // What the buttons send: the modeler's XML, or the file as it came when the modeler could not open it
  // (nothing can have been edited then, and the server's check says what is wrong with it).
  var imported = false;
  function currentXml() {
    if (!imported) return Promise.resolve(xml);
    return modeler.saveXML({format: true}).then(function (r) { return r.xml; });
  }

  function check() {
    checkBtn.disabled = true;
    status(t.checking, "busy");
    return currentXml().then(function (xml) {
      return post(root.dataset.check, {xml: xml, filename: root.dataset.filename});
    }).then(function (res) {
      if (res.error) { status(res.error.message, "err"); return res; }
      renderFindings(res.lint);
      renderRuns(res.testrun, res.lint);
      var failed = (res.testrun || []).some(function (r) { return !r.ok; });
      if (!res.lint.ok) status(fmt(t.lintErrors, res.lint.errors), "err");
      else if (failed) status(t.testrunFailed, "err");
      else status(t.ok + (res.lint.warnings ? " · " + fmt(t.lintWarnings, res.lint.warnings) : ""), "good");
      return res;
    }).catch(function () { status(t.failed, "err"); }).finally(function () { checkBtn.disabled = false; });
  }

  var deploying = false;
  var confirmBox = document.getElementById("deploy-confirm");
  function askDeploy() {  // a new version is in force at once for new tickets: the owner confirms first
    if (deploying) return;
    confirmBox.querySelector(".question").textContent = fmt(t.confirmDeploy, baseVersion || "0");
    confirmBox.hidden = false;
    document.getElementById("btn-deploy-confirm").focus();
  }
  function deploy() {
    confirmBox.hidden = true;
    if (deploying) return;  // one deploy at a time; the server also keeps a resent one from making a version
    deploying = true;
    deployBtn.disabled = true;
    status(t.deploying, "busy");
    currentXml().then(function (xml) {
      return post(root.dataset.deploy, {xml: xml, filename: root.dataset.filename, base_version: baseVersion});
    }).then(function (res) {
      if (res.error) {
        status(res.error.message, "err");
        if (res.error.findings) renderFindings({findings: res.error.findings});
        if (res.error.test_runs) renderRuns(res.error.test_runs);
        return;
      }
      baseVersion = String(res.version);
      root.dataset.baseVersion = baseVersion;
      var header = document.getElementById("designer-version");  // the header names the version now in force
      if (header) header.textContent = fmt(t.headerVersion, res.version);
      var meta = document.getElementById("designer-based-on");
      if (meta) meta.textContent = fmt(res.created === false ? t.headerUnchanged : t.headerDeployed, res.version);
      dirty = false;
      status(res.created === false ? fmt(t.unchanged, res.version) : fmt(t.deployed, res.version), "good");
      var a = el("a", "deployed-link", " → " + res.process_id + " v" + res.version);
      a.href = res.url;
      statusLine.appendChild(a);
    }).catch(function () { status(t.failed, "err"); }).finally(function () { deploying = false; deployBtn.disabled = false; });
  }

  function download() {
    currentXml().then(function (xml) {
      var a = document.createElement("a");
      a.href = URL.createObjectURL(new Blob([xml], {type: "application/xml"}));
      a.download = root.dataset.filename || "diagram.bpmn";
      document.body.appendChild(a);
      a.click();
      setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 0);
    });
  }

  checkBtn.addEventListener("click", check);
  deployBtn.addEventListener("click", askDeploy);
  document.getElementById("btn-deploy-confirm").addEventListener("click", deploy);
  document.getElementById("btn-deploy-cancel").addEventListener("click", function () { confirmBox.hidden = true; });

  /* Words the properties panel shows without asking the translator ("<empty>" of an unnamed list item). */
  var panel = document.getElementById("properties");
  new MutationObserver(function () {
    panel.querySelectorAll(".bio-properties-panel-collapsible-entry-header-title").forEach(function (n) {
      if (n.textContent === "<empty>") n.textContent = panelWords["<empty>"] || "<empty>";
    });
  }).observe(panel, {childList: true, subtree: true, characterData: true});
  document.getElementById("btn-download").addEventListener("click", download);
  window.addEventListener("beforeunload", function (e) { if (dirty) { e.preventDefault(); e.returnValue = t.dirty; } });

  /* Fit the diagram into the space right of the palette, so no element hides under it. */
  function fitBesidePalette() {
    var canvas = modeler.get("canvas");
    canvas.zoom("fit-viewport");
    var palette = document.querySelector("#canvas .djs-palette");
    var width = document.getElementById("canvas").clientWidth;
    var gap = palette ? palette.getBoundingClientRect().right - document.getElementById("canvas").getBoundingClientRect().left + 12 : 0;
    if (!gap || gap >= width) return;
    var vb = canvas.viewbox();
    var factor = width / (width - gap);
    canvas.viewbox({x: vb.x - vb.width * (factor - 1), y: vb.y - vb.height * (factor - 1) / 2,
      width: vb.width * factor, height: vb.height * factor});
  }

  var xml = JSON.parse(document.getElementById("diagram-xml").textContent);
  modeler.importXML(xml).then(function (result) {
    imported = true;
    fitBesidePalette();
    if (result.warnings && result.warnings.length) status(fmt(t.importWarnings, result.warnings.length), "warn");
    wireFindings(lintBox);
    modeler.on("commandStack.changed", function () { dirty = true; status(t.dirty, "warn"); });
    root.classList.add("ready");
  }).catch(function (err) {
    var message = err && err.message || String(err);
    // bpmn-js says this of a file with no diagram interchange (BPMNDiagram): nothing to draw, the XML is fine.
    status(/no diagram to display/i.test(message) ? t.noDiagram : t.importFailed + ": " + message, "err");
    root.classList.add("failed");
  });
})();
