// dossier site script: sortable tables. Inlined logic only; nothing is fetched.
(function () {
  "use strict";
  function cellValue(row, index, numeric) {
    var cell = row.cells[index];
    if (!cell) return numeric ? NaN : "";
    var raw = cell.getAttribute("data-value") || cell.textContent.trim();
    if (!numeric) return raw.toLowerCase();
    var number = parseFloat(raw.replace(/[,%\s]/g, ""));
    return isNaN(number) ? -Infinity : number;
  }
  // Sorting takes the rows out of their groups (a group head would sort among them).
  function flatten(table) {
    var first = table.tBodies[0];
    Array.prototype.slice.call(table.tBodies, 1).forEach(function (body) {
      Array.prototype.slice.call(body.rows).forEach(function (row) { first.appendChild(row); });
      body.remove();
    });
    first.querySelectorAll("tr.group-head").forEach(function (row) { row.remove(); });
    Array.prototype.forEach.call(first.rows, function (row) { row.hidden = false; });
  }
  function sortBy(table, header, index) {
    flatten(table);
    var numeric = header.getAttribute("data-type") === "number";
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("thead th").forEach(function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
      if (x < y) return ascending ? -1 : 1;
      if (x > y) return ascending ? 1 : -1;
      return 0;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll("tr.group-head button").forEach(function (button) {
    button.addEventListener("click", function () {
      var open = button.getAttribute("aria-expanded") === "true";
      button.setAttribute("aria-expanded", open ? "false" : "true");
      for (var row = button.closest("tr").nextElementSibling; row; row = row.nextElementSibling) row.hidden = open;
    });
  });
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (header, index) {
      header.setAttribute("tabindex", "0");
      header.addEventListener("click", function () { sortBy(table, header, index); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(table, header, index); }
      });
    });
  });
})();

// Client-side search over window.DOSSIER_SEARCH (assets/search-index.js) and the units of each
// layer (assets/search/<layer>.js, loaded as scripts on the first keystroke: no fetch() from
// file://): every word typed must appear in an entry's title or terms. Enter opens the first
// result; arrows move through them.
(function () {
  "use strict";
  var input = document.getElementById("search");
  var list = document.getElementById("search-results");
  if (!input || !list) return;
  var entries = [], haystacks = [], loaded = false;
  var LIMIT = 50;
  function index(more) {
    more.forEach(function (e) { entries.push(e); haystacks.push((e.t + " " + e.s + " " + e.k).toLowerCase()); });
  }
  index(window.DOSSIER_SEARCH || []);
  function loadUnits() {
    if (loaded) return;
    loaded = true;
    var root = document.querySelector('script[src$="search-index.js"]').getAttribute("src").replace(/assets\/search-index\.js$/, "");
    (window.DOSSIER_SEARCH_SHARDS || []).forEach(function (src) {
      var script = document.createElement("script");
      script.src = root + src;
      script.onload = function () {
        index(window.DOSSIER_SEARCH_UNITS || []);
        window.DOSSIER_SEARCH_UNITS = [];
        if (input.value) render(input.value);
      };
      document.head.appendChild(script);
    });
  }
  input.addEventListener("focus", loadUnits);
  function render(query) {
    loadUnits();
    list.textContent = "";
    var words = query.toLowerCase().split(/\s+/).filter(Boolean);
    if (!words.length) { list.hidden = true; return; }
    var found = 0, total = 0;
    for (var i = 0; i < entries.length; i++) {
      var hay = haystacks[i];
      if (!words.every(function (w) { return hay.indexOf(w) !== -1; })) continue;
      total++;
      if (found >= LIMIT) continue;
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = entries[i].u;
      link.textContent = entries[i].t;  // textContent: user-supplied names stay text
      var kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = entries[i].k;
      link.appendChild(kind);
      item.appendChild(link);
      list.appendChild(item);
      found++;
    }
    var summary = document.createElement("li");
    summary.className = "summary-line";
    summary.textContent = total ? (total > LIMIT ? total + " matches, first " + LIMIT + " shown" : total + " match" + (total > 1 ? "es" : "")) : "no match";
    list.insertBefore(summary, list.firstChild);
    list.hidden = false;
  }
  function links() { return list.querySelectorAll("a"); }
  input.addEventListener("input", function () { render(input.value); });
  input.addEventListener("keydown", function (event) {
    var all = links();
    if (event.key === "Enter" && all.length) { window.location.href = all[0].href; }
    if (event.key === "ArrowDown" && all.length) { event.preventDefault(); all[0].focus(); }
    if (event.key === "Escape") { list.hidden = true; }
  });
  list.addEventListener("keydown", function (event) {
    var all = Array.prototype.slice.call(links());
    var at = all.indexOf(document.activeElement);
    if (event.key === "ArrowDown" && at < all.length - 1) { event.preventDefault(); all[at + 1].focus(); }
    if (event.key === "ArrowUp") { event.preventDefault(); (at > 0 ? all[at - 1] : input).focus(); }
    if (event.key === "Escape") { list.hidden = true; input.focus(); }
  });
  document.addEventListener("click", function (event) {
    if (!list.contains(event.target) && event.target !== input) list.hidden = true;
  });
})();

// The interactive embedding map: an SVG scatter of window.DOSSIER_EMBEDDING, drawn here, no library.
(function () {
  "use strict";
  var box = document.getElementById("embedding-map");
  var data = window.DOSSIER_EMBEDDING;
  if (!box || !data) return;
  var SVG = "http://www.w3.org/2000/svg", W = 1000, H = 620, PAD = 20;
  var xs = data.points.map(function (p) { return p[0]; }), ys = data.points.map(function (p) { return p[1]; });
  var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs), y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
  var svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  var tip = document.createElement("div");
  tip.className = "embedding-tip";
  tip.hidden = true;
  data.points.forEach(function (p) {  // p: x, y, class, what it was mistaken for ("" when right), picture
    var mark = document.createElementNS(SVG, p[3] ? "path" : "circle");
    var cx = PAD + (p[0] - x0) / ((x1 - x0) || 1) * (W - 2 * PAD), cy = PAD + (y1 - p[1]) / ((y1 - y0) || 1) * (H - 2 * PAD);
    if (!p[3]) {
      mark.setAttribute("cx", cx); mark.setAttribute("cy", cy); mark.setAttribute("r", 3.5);
      mark.setAttribute("fill", data.colours[p[2]]); mark.setAttribute("fill-opacity", "0.8");
    } else {
      mark.setAttribute("d", "M" + (cx - 5) + " " + (cy - 5) + "l10 10m0 -10l-10 10");
      mark.setAttribute("stroke", "#000"); mark.setAttribute("stroke-width", "2");
    }
    mark.addEventListener("mouseenter", function (event) {
      tip.textContent = "class " + data.classes[p[2]] + (p[3] ? ", predicted " + p[3] : "");
      if (p[4]) { var img = document.createElement("img"); img.src = p[4]; img.width = 48; img.height = 48; tip.appendChild(img); }
      var rect = box.getBoundingClientRect();
      tip.style.left = (event.clientX - rect.left + 12) + "px";
      tip.style.top = (event.clientY - rect.top + 12) + "px";
      tip.hidden = false;
    });
    mark.addEventListener("mouseleave", function () { tip.hidden = true; });
    svg.appendChild(mark);
  });
  box.appendChild(svg);
  box.appendChild(tip);
})();
