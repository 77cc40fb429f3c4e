/* thor show --html: draws the charts (vega-embed) and runs the trajectory browser.
 * The rows come from <script id="thor-data" type="application/json"> (see show/html/rows.py for
 * their keys). Only the current page (pageSize rows) and the opened trajectory are in the DOM;
 * data is always set with textContent, never parsed as HTML. */
(function () {
  "use strict";

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  /* ---- browser state ---- */
  var data = JSON.parse(document.getElementById("thor-data").textContent);
  var rows = data.rows, pageSize = data.pageSize || 50;
  rows.forEach(function (r, i) { r._i = i; });
  var state = { q: "", correct: "all", run: "", bench: "", failed: false, corrected: false, rewrites: false, page: 0 };
  var shown = rows, selected = null;
  var $ = function (id) { return document.getElementById(id); };

  function fill(select, values) {
    values.forEach(function (v) { var o = el("option", null, v); o.value = v; select.appendChild(o); });
  }
  fill($("f-run"), data.runs);
  fill($("f-bench"), data.benchmarks);

  function haystack(r) {  // built on first search, then kept: searching 10,000 rows stays fast
    if (r._h === undefined) {
      var parts = [r.id, r.run, r.b, r.q, r.p, r.g, r.e];
      (r.turns || []).forEach(function (t) { parts.push(t.tx, t.er); });
      r._h = parts.filter(function (x) { return x !== undefined && x !== null; }).join("\n").toLowerCase();
    }
    return r._h;
  }

  function keep(r) {
    if (state.correct === "correct" && r.c !== true) return false;
    if (state.correct === "wrong" && r.c !== false) return false;
    if (state.correct === "ungraded" && r.c !== null) return false;
    if (state.run && r.run !== state.run) return false;
    if (state.bench && r.b !== state.bench) return false;
    if (state.failed && !r.f) return false;
    if (state.corrected && !(r.x > 0 || (r.ret && r.ret.length))) return false;
    if (state.rewrites && !(r.gen && r.gen.length)) return false;
    return !state.q || haystack(r).indexOf(state.q) >= 0;
  }

  function verdict(c) {
    return c === true ? el("span", "ok", "correct") : c === false ? el("span", "bad", "wrong") : el("span", "na", "not graded");
  }

  function renderPage() {
    var pages = Math.max(1, Math.ceil(shown.length / pageSize));
    state.page = Math.min(state.page, pages - 1);
    var body = document.querySelector("#rows tbody");
    body.textContent = "";
    shown.slice(state.page * pageSize, (state.page + 1) * pageSize).forEach(function (r) {
      var tr = el("tr");
      tr.dataset.index = r._i;
      [r.run, r.id, r.s, r.b].forEach(function (v) { tr.appendChild(el("td", null, v)); });
      var v = el("td"); v.appendChild(verdict(r.c)); tr.appendChild(v);
      [r.p, r.g, r.t, r.x, r.f ? "yes" : "", r.n].forEach(function (x) { tr.appendChild(el("td", null, x)); });
      if (r === selected) tr.className = "selected";
      tr.addEventListener("click", function () { openRow(r); });
      body.appendChild(tr);
    });
    $("page").textContent = "page " + (state.page + 1) + " of " + pages;
    $("count").textContent = shown.length + " of " + rows.length + " trajectories";
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
  }

  function refilter() {
    shown = rows.filter(keep);
    state.page = 0;
    renderPage();
  }

  function diffBlock(lines) {
    var pre = el("pre", "diff");
    lines.forEach(function (ln) {
      var c = ln.charAt(0), cls = c === "+" ? "add" : c === "-" ? "del" : ln.indexOf("@@") === 0 ? "hunk" : "ctx";
      pre.appendChild(el("span", cls, ln + "\n"));
    });
    return pre;
  }

  function retryBox(rt) {
    var box = el("div", "retry");
    box.appendChild(el("div", "label", "self-correction: a failed cell was dropped (" + rt.why + ")"));
    if (rt.er) box.appendChild(el("div", "exec failed", rt.er));
    box.appendChild(el("div", "label", "dropped attempt (-) vs what the model wrote instead (+)"));
    box.appendChild(diffBlock(rt.diff));
    return box;
  }

  function openRow(r) {
    selected = r;
    var d = $("detail");
    d.hidden = false;
    $("browse").className = "open";
    d.textContent = "";
    d.appendChild(el("h3", null, r.id + (r.s !== null && r.s !== undefined ? "  sample " + r.s : "") + "  (" + r.run + ")"));
    if (r.q) d.appendChild(el("div", "question", r.q));
    var retriesAt = {};
    (r.ret || []).forEach(function (rt) { (retriesAt[rt.at] = retriesAt[rt.at] || []).push(rt); });
    (r.turns || []).forEach(function (t, i) {
      (retriesAt[i] || []).forEach(function (rt) { d.appendChild(retryBox(rt)); });
      delete retriesAt[i];
      if (t.k === "code") {
        d.appendChild(el("div", "label", "cell (" + (t.tool || "python") + ")" + (t.a === "critic" ? ", by the critic" : "")));
        var pre = el("pre", "code"), code = el("code", (t.tool || "python") === "python" ? "language-python" : "nohighlight", t.tx);
        pre.appendChild(code);
        d.appendChild(pre);
        if (window.hljs && code.className === "language-python") hljs.highlightElement(code);
      } else if (t.k === "output") {
        var failed = t.st && t.st !== "ok";
        d.appendChild(el("div", "label", "tool output"));
        d.appendChild(el("pre", "tool-output" + (failed ? " failed" : ""), t.tx || "(no output)"));
        if (t.st) d.appendChild(el("div", "exec" + (failed ? " failed" : ""), "[" + t.st + "]" + (t.er ? " " + t.er : "")));
      } else if (t.tx && t.tx.trim()) {
        d.appendChild(el("div", "turn-text" + (t.a === "critic" ? " critic" : ""), t.tx));
      }
    });
    Object.keys(retriesAt).forEach(function (k) { retriesAt[k].forEach(function (rt) { d.appendChild(retryBox(rt)); }); });
    (r.gen || []).forEach(function (g) {
      var box = el("div", "rewrite");
      box.appendChild(el("div", "label", "step " + g.i + ": the actor's text (-) and the critic's rewrite (+), " + g.cells + " cells"));
      box.appendChild(diffBlock(g.diff));
      d.appendChild(box);
    });
    if (r.e) d.appendChild(el("div", "exec failed", "error: " + r.e));
    var v = el("div", "verdict");
    v.appendChild(verdict(r.c));
    v.appendChild(document.createTextNode("  answer: " + (r.p === null || r.p === undefined ? "(none)" : r.p) + "  gold: " + r.g +
      (r.m ? "  [" + r.m + "]" : "") + "  · " + r.t + " tool calls, " + r.x + " corrections, stop: " + r.stop));
    d.appendChild(v);
    renderPage();
    d.scrollTop = 0;
    d.scrollIntoView({ block: "nearest" });
  }

  /* ---- controls ---- */
  var timer = null;
  $("search").addEventListener("input", function (e) {
    clearTimeout(timer);
    timer = setTimeout(function () { state.q = e.target.value.trim().toLowerCase(); refilter(); }, 120);
  });
  [["f-correct", "correct"], ["f-run", "run"], ["f-bench", "bench"]].forEach(function (p) {
    $(p[0]).addEventListener("change", function (e) { state[p[1]] = e.target.value; refilter(); });
  });
  [["f-failed", "failed"], ["f-corrected", "corrected"], ["f-rewrites", "rewrites"]].forEach(function (p) {
    $(p[0]).addEventListener("change", function (e) { state[p[1]] = e.target.checked; refilter(); });
  });
  $("prev").addEventListener("click", function () { state.page -= 1; renderPage(); });
  $("next").addEventListener("click", function () { state.page += 1; renderPage(); });

  refilter();
  window.thorFirstPageMs = performance.now();  // bench/html_bench.py reads it: time to the first page
  document.body.dataset.ready = "1";

  /* ---- charts (after the first page: vega compiles each spec before it draws) ---- */
  document.querySelectorAll("script.chart-spec").forEach(function (s) {
    var target = document.getElementById(s.dataset.target);
    vegaEmbed(target, JSON.parse(s.textContent), { actions: false, renderer: "svg" })
      .then(function () { target.dataset.rendered = "1"; })
      .catch(function (err) { target.textContent = "chart failed: " + err; });
  });
})();
