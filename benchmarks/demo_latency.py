"""How fast the demo page is, in Debian's headless Chromium: seconds from ``electra demo`` to the page answering
(Gradio's import and the models' loading), from opening the page to its first grid, and per action (median of
``--repeats``), for a trained image run and a text run.

    python benchmarks/demo_latency.py IMAGE_RUN TEXT_RUN [--repeats 7] [--out benchmarks/results/demo_latency.json]

Run it alone on the machine: it is a wall-clock measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from browser_helpers import launch_chromium, serving  # noqa: E402

WAIT_MS = 30_000


def _timed(page, action, changed_js: str, arg=None) -> float:
    """Seconds from ``action()`` until the page shows its answer (``changed_js`` turns true)."""
    t = time.perf_counter()
    action()
    page.wait_for_function(changed_js, arg=arg, timeout=WAIT_MS)
    return time.perf_counter() - t


def _src(page, selector: str) -> str:
    return page.locator(f"{selector} img").first.get_attribute("src") or ""


def _open(browser, url: str, ready: str):
    """A new page at ``url`` and the seconds until ``ready`` shows."""
    page = browser.new_page()
    t = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(ready, timeout=WAIT_MS)
    return page, time.perf_counter() - t


def image_page(browser, url: str, repeats: int) -> dict:
    page, opened = _open(browser, url, "#grid img")
    changed = "([sel, old]) => { const i = document.querySelector(sel + ' img'); return i && i.src !== old; }"
    noise, walk = [], []
    for _ in range(repeats):
        old = _src(page, "#grid")
        noise.append(_timed(page, lambda: page.click("#new-noise"), changed, ["#grid", old]))
    slider = page.locator("#walk-position input[type=range]")
    page.wait_for_selector("#walk-image img", timeout=WAIT_MS)
    for i in range(repeats):
        old = _src(page, "#walk-image")
        slider.focus()
        walk.append(_timed(page, lambda: page.keyboard.press("ArrowLeft" if i % 2 else "ArrowRight"), changed,
                           ["#walk-image", old]))
    page.close()
    return {"page_to_first_grid_s": round(opened, 3), "new_noise_s": round(statistics.median(noise), 3),
            "walk_step_s": round(statistics.median(walk), 3)}


def text_page(browser, url: str, repeats: int) -> dict:
    page, opened = _open(browser, url, "#fill")
    fills, detects = [], []
    for i in range(repeats):
        # each round's text differs (its number), so each answer differs from the one before
        page.locator("#fill-text textarea").fill(f"the [MASK] sat on the [MASK] number {i}.")
        old = page.locator("#filled textarea").input_value()
        fills.append(_timed(page, lambda: page.click("#fill"),
                            "(old) => document.querySelector('#filled textarea').value !== old", old))
        page.locator("#detect-text textarea").fill(f"the cat sat on the moon {i} times.")
        old = page.evaluate("() => { const d = document.querySelector('#detected'); return d ? d.innerText : ''; }")
        detects.append(_timed(page, lambda: page.click("#detect"),
                              "(old) => { const d = document.querySelector('#detected'); "
                              "return d !== null && d.innerText !== old; }", old))
    page.close()
    return {"page_to_controls_s": round(opened, 3), "fill_s": round(statistics.median(fills), 3),
            "detect_s": round(statistics.median(detects), 3)}


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser()
    parser.add_argument("image_run")
    parser.add_argument("text_run")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(HERE / "results" / "demo_latency.json"))
    args = parser.parse_args()
    result = {}
    with sync_playwright() as p:
        browser = launch_chromium(p)
        for kind, run, measure in (("image", args.image_run, image_page), ("text", args.text_run, text_page)):
            with serving(Path(run)) as (url, started):
                result[kind] = {"run": run, "command_to_serving_s": round(started, 2),
                                **measure(browser, url, args.repeats)}
            print(kind, json.dumps(result[kind]), flush=True)
        browser.close()
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
