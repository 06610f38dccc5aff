"""tests/browser.py against real headless Chromium: scripts run, images decode, and a
broken image, a hung page or a stray browser process are all seen."""
import base64
import io
import os

import pytest
from PIL import Image

from tests import browser

PNG_SIZE = (37, 23)
ROWS = (("resnet50", "0.71"), ("vit_b16", "0.93"), ("mobilenet_v3", "0.64"))
# The page sorts its table by accuracy, best first, by clicking the header from its load handler.
SORTED = [["model", "accuracy"], ["vit_b16", "0.93"], ["resnet50", "0.71"], ["mobilenet_v3", "0.64"]]
SORT_JS = """
document.getElementById('acc').addEventListener('click', () => {
  const body = document.querySelector('#scores tbody');
  const rows = Array.from(body.rows);
  rows.sort((a, b) => Number(b.cells[1].textContent) - Number(a.cells[1].textContent));
  rows.forEach((row) => body.appendChild(row));
  document.body.dataset.sorted = 'accuracy';
});
window.addEventListener('load', () => document.getElementById('acc').click());
"""


def png_base64(size=PNG_SIZE) -> str:
  """A small PNG (a colour gradient), base64-encoded."""
  image = Image.new("RGB", size)
  image.putdata([(255 * x // size[0], 255 * y // size[1], 128)
                 for y in range(size[1]) for x in range(size[0])])
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  return base64.b64encode(buffer.getvalue()).decode()


def page_html() -> str:
  """A self-contained page: a table its script sorts, a good and a broken inline PNG."""
  body_rows = "".join(f"<tr><td>{m}</td><td>{a}</td></tr>" for m, a in ROWS)
  return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>scores</title></head><body>
<h1>Scores</h1>
<table id="scores"><thead><tr><th>model</th><th id="acc">accuracy</th></tr></thead>
<tbody>{body_rows}</tbody></table>
<img alt="good" src="data:image/png;base64,{png_base64()}" width="370" height="230">
<img alt="broken" src="data:image/png;base64,bm90IGEgUE5H!!not-base64">
<script>{SORT_JS}</script>
</body></html>"""


def chromium_pids() -> set:
  """Ids of the live processes (zombies aside) whose name starts with chrom: chromium and
  chrome_crashpad_handler, which init may take a second to reap once they died."""
  pids = set()
  for entry in os.listdir("/proc"):
    try:
      with open(f"/proc/{entry}/stat", "rb") as f:
        name, state = f.read().split(b" (", 1)[1].rsplit(b") ", 1)
      if name.startswith(b"chrom") and not state.startswith((b"Z", b"X")):
        pids.add(int(entry))
    except (OSError, ValueError):
      pass
  return pids


@pytest.fixture
def page(tmp_path):
  path = tmp_path / "report.html"
  path.write_text(page_html(), encoding="utf-8")
  return path


@pytest.mark.slow
@browser.requires_chromium
def test_render_runs_scripts_decodes_images_and_screenshots(page, tmp_path):
  before = chromium_pids()
  shot = tmp_path / "shots" / "report.png"
  rendered = browser.render(page, screenshot_path=shot, timeout_s=60)

  assert rendered.tables == [SORTED]  # sorted: the page's script ran
  assert 'data-sorted="accuracy"' in rendered.dom
  good, broken = rendered.images
  assert (good["alt"], good["complete"]) == ("good", True)
  assert (good["natural_width"], good["natural_height"]) == PNG_SIZE
  assert good["src"].startswith("data:image/png;base64,")
  assert (broken["alt"], broken["natural_width"], broken["natural_height"]) == ("broken", 0, 0)
  assert rendered.broken_images == [broken]
  assert rendered.js_errors == []
  assert rendered.requests == [page.resolve().as_uri()]  # self-contained: nothing else fetched

  assert rendered.screenshot == str(shot)
  data = shot.read_bytes()
  assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
  with Image.open(shot) as image:
    assert image.size == browser.WINDOW_SIZE
    low, high = image.convert("L").getextrema()
    assert high - low > 100  # text and the gradient, not a blank page
  assert chromium_pids() <= before  # no browser process left behind


@pytest.mark.slow
@browser.requires_chromium
def test_render_reports_script_errors(tmp_path):
  path = tmp_path / "error.html"
  path.write_text("<script>console.error('bad', 1); undefinedFunction();</script>", encoding="utf-8")
  rendered = browser.render(path, timeout_s=60)
  assert rendered.js_errors[0] == "bad 1"
  assert "undefinedFunction is not defined" in rendered.js_errors[1]
  assert rendered.screenshot is None


@pytest.mark.slow
@browser.requires_chromium
def test_render_kills_a_hung_page_at_its_timeout(tmp_path):
  path = tmp_path / "hang.html"
  path.write_text("<script>while (true) {}</script>", encoding="utf-8")
  before = chromium_pids()
  with pytest.raises(TimeoutError):
    browser.render(path, timeout_s=2)
  assert chromium_pids() <= before


def test_render_needs_the_file(tmp_path):
  with pytest.raises(FileNotFoundError):
    browser.render(tmp_path / "missing.html")


def test_parse_tables_nested_and_script_text():
  dom = ("<table><tr><th> a  b </th><td>1<script>x = 2</script></td></tr>"
         "<tr><td><table><tr><td>inner</td></tr></table>outer</td></tr></table>")
  assert browser.parse_tables(dom) == [[["a b", "1"], ["outer"]], [["inner"]]]
