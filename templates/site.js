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
  function sortBy(table, header, index) {
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

// Client-side search over window.DOSSIER_SEARCH (assets/search-index.js): every word typed must
// appear in an entry's title or terms. Enter opens the first result; arrows move through them.
(function () {
  "use strict";
  var input = document.getElementById("search");
  var list = document.getElementById("search-results");
  var entries = window.DOSSIER_SEARCH || [];
  if (!input || !list) return;
  var haystacks = entries.map(function (e) { return (e.t + " " + e.s + " " + e.k).toLowerCase(); });
  var LIMIT = 50;
  function render(query) {
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
