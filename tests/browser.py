"""Report pages in a real browser: headless Chromium screenshots and layout measurements.

``make screenshots`` (``python -m tests.browser --out screenshots``) makes three small scripted runs — a
society, a two-generation loop and a two-seed sweep compared by ``agora-report`` — then opens each
``report.html`` in headless Chromium, saves a full-page screenshot and checks what a reader would see
first: the page fits its width (nothing runs off the right edge at 1280 or 800 px), every image loads,
and the screenshot is not blank. tests/e2e/test_report_pages.py runs the same checks when Chromium is
installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
         "--disable-dev-shm-usage", "--force-device-scale-factor=1"]
# Written into a copy of the page: after load, the measurements replace the body, and --dump-dom prints them.
PROBE = """<script>window.addEventListener('load', () => {
  const wraps = [...document.querySelectorAll('.table-wrap')];
  const m = {viewport: window.innerWidth, scroll_width: document.documentElement.scrollWidth,
    height: document.documentElement.scrollHeight,
    images: document.images.length,
    broken_images: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    tables: wraps.length, scrolling_tables: wraps.filter(w => w.scrollWidth > w.clientWidth + 1).length,
    wider_than_page: [...document.body.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right >
      window.innerWidth + 1).map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')).slice(0, 5)};
  document.body.innerHTML = '<pre id="probe">' + JSON.stringify(m) + '</pre>';
});</script>"""


def chromium() -> str | None:
    """The Chromium binary on PATH, if any (Debian's ``chromium``, Ubuntu's ``chromium-browser``)."""
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile each time: nothing carried between pages
        return subprocess.run([chromium() or "chromium", *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)


def measure(page: Path, width: int = 1280) -> dict:
    """Layout figures of ``page`` at ``width`` px: page scroll width, height, images, tables that scroll."""
    probe = page.with_name(f".probe-{page.name}")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    try:
        res = _run([f"--window-size={width},1200", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()])
    finally:
        probe.unlink()
    start, end = res.stdout.find('<pre id="probe">'), res.stdout.find("</pre>")
    if start < 0:
        raise RuntimeError(f"chromium measured nothing on {page}: {res.stderr.strip()[-500:]}")
    return json.loads(res.stdout[start + len('<pre id="probe">'):end].replace("&quot;", '"').replace("&amp;", "&"))


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 2000) -> Path:
    """A PNG of ``page``: ``height`` px tall (pass the page's height for the whole page)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    res = _run([f"--window-size={width},{height}", "--virtual-time-budget=10000", f"--screenshot={out}", page.as_uri()])
    if not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {page}: {res.stderr.strip()[-500:]}")
    return out


def blank(png: Path) -> bool:
    """Whether the screenshot is one flat colour (a page that did not render)."""
    from matplotlib.image import imread

    img = imread(png)
    return float(img.std()) < 1e-3


def check_page(page: Path, out: Path) -> dict:
    """Measure ``page`` at 1280 and 800 px, screenshot it whole at 1280 px; the problems found, if any."""
    wide, narrow = measure(page, 1280), measure(page, 800)
    png = screenshot(page, out, 1280, min(max(wide["height"], 600), 16000))
    problems = [f"{w} px: the page is {m['scroll_width']} px wide ({', '.join(m['wider_than_page'])})"
                for w, m in ((1280, wide), (800, narrow)) if m["scroll_width"] > m["viewport"]]
    problems += [f"broken image {src}" for src in wide["broken_images"]]
    problems += ["blank screenshot"] if blank(png) else []
    return {"page": str(page), "screenshot": str(png), "at_1280": wide, "at_800": narrow, "problems": problems}


def agora(*args: str, cwd: Path, code: str | None = None) -> None:
    """``agora ARGS`` (``code``: another entry point, as ``python -c CODE ARGS``) in a child, from this checkout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    argv = [sys.executable, *(("-c", code) if code else ("-m", "sim.cli")), *args]
    res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800, check=False)
    if res.returncode:
        raise RuntimeError(f"agora {' '.join(args)} failed: {res.stderr[-2000:]}")


def make_runs(base: Path, generations: bool = True) -> dict[str, Path]:
    """Small scripted runs whose pages are checked: a society, a generations loop (trains a small reward
    model and DPO, ~2 min on 2 cores) and a two-seed sweep compared by agora-report."""
    base.mkdir(parents=True, exist_ok=True)
    pages = {}
    agora("llm=scripted", "population.size=8", "sim.progress=false", f"hydra.run.dir={base / 'society'}", cwd=base)
    pages["society"] = base / "society" / "report.html"
    if generations:
        agora("experiment=tiny_evolve", "llm=scripted", "sim.progress=false", f"hydra.run.dir={base / 'generations'}",
              cwd=base)
        pages["generations"] = base / "generations" / "report.html"
    agora("--multirun", "experiment=pluralism", "llm=scripted", "study.pluralism.dilemmas=3", "seed=0,1",
          "population.size=4,8", "sim.progress=false", f"hydra.sweep.dir={base / 'sweep'}", cwd=base)
    agora(str(base / "sweep"), cwd=base, code="from sim.cli import report_main; report_main()")
    pages["sweep"] = base / "sweep" / "report.html"
    pages["sweep_run"] = next(p for p in sorted((base / "sweep").glob("*/report.html")))
    return pages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.browser", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("screenshots"), help="folder for the PNGs and checks.json")
    ap.add_argument("--no-generations", action="store_true", help="skip the generations run (it trains models)")
    args = ap.parse_args(argv)
    if not chromium():
        print("screenshots: no chromium on PATH (Debian/Ubuntu: apt-get install -y chromium)", file=sys.stderr)
        return 2
    out = args.out.resolve()
    pages = make_runs(out / "runs", generations=not args.no_generations)
    results = [check_page(page, out / f"{name}.png") for name, page in pages.items()]
    (out / "checks.json").write_text(json.dumps(results, indent=1))
    for r in results:
        print(f"{r['screenshot']}: {r['at_1280']['scroll_width']} px wide at 1280, {r['at_800']['scroll_width']} at 800, "
              f"{r['at_1280']['images']} images, {r['at_1280']['scrolling_tables']} of {r['at_1280']['tables']} tables "
              f"scroll; " + ("; ".join(r["problems"]) or "ok"))
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
