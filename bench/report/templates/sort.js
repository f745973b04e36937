// Sortable tables: a click on a column header (or Enter / Space on it: headers take the keyboard
// focus) sorts the rows by that column, ascending first, descending on the next click; aria-sort
// and an arrow in the header say which way. A cell that starts with a number sorts by it
// ("1.23 [1.1, 1.4]" by 1.23, "412 + 35 (0.9)" by 412, "1,250 steps" by 1250, "1e-05" by 0.00001,
// "2/3" by 2); text sorts after numbers, digits in it by value ("not in 3" before "not in 10");
// empty cells, "n/a" and "—" stay last either way. Rows with equal keys keep their order.
(function () {
  "use strict";
  var NUMBER = /^[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:e[-+]?\d+)?/i;
  var EMPTY = ["", "n/a", "\u2014", "-", "\u2013"];

  function sortKey(cell) {
    var text = (cell ? cell.textContent : "").trim();
    if (EMPTY.indexOf(text.toLowerCase()) >= 0) {
      return { kind: 2, value: 0 };
    }
    var match = NUMBER.exec(text);
    if (match && /\d/.test(match[0])) {
      var value = parseFloat(match[0].replace(/,/g, "").replace("\u2212", "-"));
      if (isFinite(value)) {
        return { kind: 0, value: value };
      }
    }
    return { kind: 1, value: text };
  }

  function compare(a, b) {
    if (a.kind !== b.kind) {
      return a.kind - b.kind;
    }
    if (a.kind === 0) {
      return a.value - b.value;
    }
    return a.kind === 1 ? a.value.localeCompare(b.value, undefined, { numeric: true }) : 0;
  }

  function sortBy(table, th, column) {
    var descending = th.getAttribute("aria-sort") === "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.map.call(body.rows, function (row, i) {
      return { row: row, key: sortKey(row.cells[column]), index: i };
    });
    rows.sort(function (x, y) {
      var c = compare(x.key, y.key);
      if (descending && x.key.kind !== 2 && y.key.kind !== 2) {
        c = -c;
      }
      return c || x.index - y.index;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
    Array.prototype.forEach.call(th.parentNode.cells, function (other) {
      other.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.data"), function (table) {
    if (!table.tHead || !table.tBodies.length) {
      return;
    }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
      th.classList.add("sortable");
      th.tabIndex = 0;
      th.title = "Sort by this column (again: reverse)";
      th.addEventListener("click", function () { sortBy(table, th, column); });
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortBy(table, th, column);
        }
      });
    });
  });
})();
