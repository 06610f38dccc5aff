"""The HTML report's inline stylesheet and script (no network: nothing is linked)."""

CSS = """
:root { --fg: #1d232a; --muted: #5b6570; --line: #d8dde3; --head: #f3f5f7;
        --best: #e6f4ea; --failed: #b3261e; --running: #7a5a00; --missing: #6b7280; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--fg); background: #fff; }
header { padding: 20px 32px 12px; border-bottom: 1px solid var(--line); background: var(--head); }
h1 { margin: 0 0 4px; font-size: 22px; }
h2 { margin: 28px 0 8px; font-size: 17px; }
h3 { margin: 0 0 6px; font-size: 14px; }
main { padding: 0 32px 32px; max-width: 1600px; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.workdir { color: var(--muted); margin: 0 0 6px; word-break: break-all; }
.counts span { display: inline-block; margin: 4px 6px 0 0; padding: 1px 8px; border-radius: 10px;
               border: 1px solid var(--line); background: #fff; }
.counts .failed { color: var(--failed); border-color: var(--failed); }
.counts .running { color: var(--running); border-color: var(--running); }
.counts .missing { color: var(--missing); }
nav { margin-top: 8px; }
nav a { margin-right: 14px; color: #1a5fb4; text-decoration: none; }
nav a:hover { text-decoration: underline; }
.alert { margin: 16px 0 0; padding: 8px 12px; border-left: 4px solid var(--failed);
         background: #fdecea; }
.alert.info { border-color: #1a5fb4; background: #e8f0fb; }
table { border-collapse: collapse; margin: 4px 0 6px; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: right; white-space: nowrap; }
th { background: var(--head); font-weight: 600; }
td.label, th.label { text-align: left; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #b0b7bf; font-weight: 400; }
table.sortable th[aria-sort="ascending"]::after { content: " \\2191"; color: var(--fg); }
table.sortable th[aria-sort="descending"]::after { content: " \\2193"; color: var(--fg); }
td.best { background: var(--best); }
td.status-failed { color: var(--failed); font-weight: 600; }
td.status-running { color: var(--running); font-style: italic; }
td.status-missing { color: var(--missing); }
p.note { margin: 2px 0; color: var(--muted); font-size: 12.5px; max-width: 1100px; }
.figures { display: grid; gap: 18px; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr));
           align-items: start; }
figure { margin: 0; padding: 10px; border: 1px solid var(--line); border-radius: 6px; }
figure.wide { grid-column: 1 / -1; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { margin-top: 6px; color: var(--muted); font-size: 12.5px; }
ul.problems li { margin: 2px 0; }
footer { padding: 12px 32px 24px; color: var(--muted); font-size: 12px; }
"""

# Sorts a table.sortable by the clicked header: numbers (with the report's units: K/M/G
# counts, B/KiB/MiB/GiB, s/min/h, MB) numerically with text cells (failed, missing, -) last
# either way, other columns as text; ties keep the current order. Enter/Space work too.
JS = r"""
(() => {
  'use strict';
  const UNITS = {K: 1e3, M: 1e6, G: 1e9, B: 1, KiB: 1024, MiB: 1048576, GiB: 1073741824,
                 s: 1, min: 60, h: 3600, MB: 1};
  const NUMBER = /^([+\-\u2212]?\d+(?:\.\d+)?)\s*(KiB|MiB|GiB|min|MB|[KMGBsh])?(?![\w.])/;
  function sortKey(text) {
    const match = NUMBER.exec(text.trim());
    if (!match) return null;
    const value = parseFloat(match[1].replace('\u2212', '-'));
    return match[2] ? value * UNITS[match[2]] : value;
  }
  function sortBy(th) {
    const table = th.closest('table');
    const body = table.tBodies[0];
    const col = th.cellIndex;
    const dir = th.getAttribute('aria-sort') === 'ascending' ? 'descending' : 'ascending';
    for (const other of th.parentNode.cells) other.removeAttribute('aria-sort');
    th.setAttribute('aria-sort', dir);
    const rows = Array.from(body.rows);
    const texts = rows.map((row) => (row.cells[col] ? row.cells[col].textContent.trim() : ''));
    const keys = texts.map(sortKey);
    const numeric = keys.some((k) => k !== null);
    const sign = dir === 'ascending' ? 1 : -1;
    const order = rows.map((_, i) => i).sort((a, b) => {
      if (numeric) {
        if (keys[a] === null || keys[b] === null) {
          return (keys[a] === null) - (keys[b] === null) || a - b;
        }
        return sign * (keys[a] - keys[b]) || a - b;
      }
      return sign * texts[a].localeCompare(texts[b], undefined, {numeric: true}) || a - b;
    });
    order.forEach((i) => body.appendChild(rows[i]));
    table.dataset.sortedBy = th.textContent.trim() + ' ' + dir;
  }
  for (const th of document.querySelectorAll('table.sortable thead th')) {
    th.tabIndex = 0;
    th.title = 'Sort by this column';
    th.addEventListener('click', () => sortBy(th));
    th.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        sortBy(th);
      }
    });
  }
})();
"""
