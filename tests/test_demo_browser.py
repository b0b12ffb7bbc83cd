"""``electra demo`` driven the way a person uses it: a real headless Chromium (Debian's, through Playwright) on the
page served by the command, for a conditional image run, a semi-supervised run and a text run.  The page must show
exactly what the library draws and scores, answer bad input with a message, and leave the run folder untouched."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from electra.config import apply_overrides
from electra.image.config import preset_config
from electra.image.train import train_image
from browser_helpers import launch_chromium, serving
from conftest import TINY, make_digits, write_mnist
from test_cli import assert_one_line_error, run_cli
from text_fixtures import tiny_config

WAIT_MS = 30_000


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = launch_chromium(p)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    mnist = write_mnist(root / "mnist")
    cond = train_image(apply_overrides(preset_config("cdcgan"), {**TINY, "data_dir": str(mnist), "steps": 4}),
                       out=str(root / "cdcgan"), progress=False)
    semi = train_image(apply_overrides(preset_config("ssgan"), {"dataset": "mnist", "data_dir": str(mnist),
                                                                "labels": 20, "batch_size": 16, "steps": 3,
                                                                "log_every": 1}),
                       out=str(root / "ssgan"), progress=False)
    return {"cdcgan": cond, "ssgan": semi, "root": root}


@pytest.fixture(autouse=True)
def one_thread():
    """The references drawn here with the demo process's thread count (browser_helpers.serving): otherwise a
    busy machine, where the two processes pick different counts, changes grey levels by one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _picture(page, selector: str) -> np.ndarray:
    """The pixels of the image the page shows at ``selector`` (fetched as the browser fetched it)."""
    src = page.locator(f"{selector} img").first.get_attribute("src")
    data = page.request.get(src if src.startswith("http") else page.url.rstrip("/") + "/" + src.lstrip("/")).body()
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def _assert_same_picture(shown: np.ndarray, drawn: np.ndarray) -> None:
    """The page shows what the library draws: the same pixels, but for a grey level of rounding in a few (the
    server's convolutions, run beside the page's other requests, round a .5 now and then the other way: up to
    2.6% of pixels by one level measured on a busy machine). Another seed or class changes most pixels by far
    more."""
    assert shown.shape == drawn.shape
    diff = np.abs(shown.astype(int) - drawn.astype(int))
    assert diff.max() <= 1, f"pixels differ by up to {diff.max()} grey levels"
    assert (diff > 0).mean() < 0.05, f"{100 * (diff > 0).mean():.1f}% of pixels differ"


def _wait_for_new_picture(page, selector: str, old_src: str | None) -> str:
    page.wait_for_function(
        "([sel, old]) => { const i = document.querySelector(sel + ' img'); return i && i.src && i.src !== old; }",
        arg=[selector, old_src or ""], timeout=WAIT_MS)
    return page.locator(f"{selector} img").first.get_attribute("src")


def test_image_page_new_noise_walk_and_digit_show_what_the_library_draws(browser, runs):
    from electra.demo.image_page import ImageDemo

    demo = ImageDemo(runs["cdcgan"])
    with serving(runs["cdcgan"]) as (url, _):
        page = browser.new_page()
        page.goto(url)
        src = _wait_for_new_picture(page, "#grid", None)
        _assert_same_picture(_picture(page, "#grid"), demo.grid(0, 64, "any"))
        with pytest.raises(AssertionError):   # the tolerance still tells one seed's grid from another's
            _assert_same_picture(demo.grid(0, 64, "any"), demo.grid(1, 64, "any"))

        page.click("#new-noise")
        src = _wait_for_new_picture(page, "#grid", src)
        assert page.locator("#seed input").input_value() == "1"
        _assert_same_picture(_picture(page, "#grid"), demo.grid(1, 64, "any"))

        walk_src = _wait_for_new_picture(page, "#walk-image", None)   # drawn when the page opened, at 0.5
        page.locator("#walk-position input[type=range]").focus()
        for _ in range(4):
            page.keyboard.press("ArrowRight")   # 0.5 → 0.7 in steps of 0.05
        _wait_for_new_picture(page, "#walk-image", walk_src)
        page.wait_for_timeout(500)   # the last of the four key presses' answers
        position = float(page.locator("#walk-position input[type=number]").input_value())
        assert position == pytest.approx(0.7)
        here, strip = demo.walk(1, position, "any")
        _assert_same_picture(_picture(page, "#walk-image"), here)

        page.locator("#class input").click()
        page.get_by_role("option", name="7", exact=True).click()
        _wait_for_new_picture(page, "#grid", src)
        _assert_same_picture(_picture(page, "#grid"), demo.grid(1, 64, "7"))
        assert page.locator("#curves img").count() == 1 and "step" in page.locator("#last-row").inner_text()

        page.locator("#seed input").fill("2.5")   # bad input: a message on the page, never a stack trace
        page.click("#draw")
        page.wait_for_function("() => document.querySelector('#image-status').innerText.includes('whole number')",
                               timeout=WAIT_MS)
        assert "Traceback" not in page.content()
        page.close()


def test_semi_supervised_page_reads_an_uploaded_digit_and_refuses_other_sizes(browser, runs, tmp_path):
    from electra.demo.image_page import ImageDemo

    digit = make_digits(1, seed=5)[0][0]
    Image.fromarray(digit).save(tmp_path / "digit.png")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "big.png")
    want = ImageDemo(runs["ssgan"]).recognise(digit)
    best = max(want, key=want.get)
    with serving(runs["ssgan"]) as (url, _):
        page = browser.new_page()
        page.goto(url)
        page.locator("#digit-upload input[type=file]").set_input_files(str(tmp_path / "digit.png"))
        page.wait_for_selector("#digit-upload img", timeout=WAIT_MS)
        page.click("#read-digit")
        page.wait_for_function("() => document.querySelector('#digit-probabilities').innerText.includes('%')",
                               timeout=WAIT_MS)
        # the caption, the top class, then each class with its percentage
        lines = [line.strip() for line in page.locator("#digit-probabilities").inner_text().splitlines()]
        assert lines[1] == best
        shown = dict(zip(lines[2::2], lines[3::2]))
        assert shown == {k: f"{round(100 * v)}%" for k, v in want.items()}

        page.locator("#digit-upload button[aria-label='Remove Image']").click()
        page.locator("#digit-upload input[type=file]").set_input_files(str(tmp_path / "big.png"))
        page.wait_for_selector("#digit-upload img", timeout=WAIT_MS)
        page.click("#read-digit")
        page.wait_for_function("() => document.querySelector('#image-status').innerText.includes('28×28')",
                               timeout=WAIT_MS)
        assert "40×40" in page.locator("#image-status").inner_text()
        page.close()


@pytest.fixture(scope="module")
def text_run(corpus, tmp_path_factory):
    from electra.text.pretrain import pretrain

    return pretrain(tiny_config(steps=2), data=str(corpus["data"]), out=str(tmp_path_factory.mktemp("dt") / "run"),
                    progress=False)


def test_text_page_fills_masks_and_colours_each_token_by_the_discriminator(browser, text_run):
    from electra.text.generate import Detector, Filler

    sentence = "the old man sang to the moon."
    found = Detector(text_run).detect(sentence)
    filled = Filler(text_run).fill("the cat sat on the [MASK].", 5, False)
    with serving(text_run) as (url, _):
        page = browser.new_page()
        page.goto(url)
        page.locator("#fill-text textarea").fill("the cat sat on the [MASK].")
        page.click("#fill")
        page.wait_for_function("() => document.querySelector('#filled textarea').value.length > 0",
                               timeout=WAIT_MS)
        assert page.locator("#filled textarea").input_value() == filled.text
        assert filled.candidates[0][0][0] in page.locator("#candidates").inner_text()

        page.locator("#detect-text textarea").fill(sentence)
        page.click("#detect")
        page.wait_for_selector("#detected .electra-token", timeout=WAIT_MS)
        tokens = page.locator("#detected .electra-token")
        assert tokens.count() == len(found.tokens)
        shown = [float(tokens.nth(i).get_attribute("data-p")) for i in range(tokens.count())]
        np.testing.assert_allclose(shown, found.probabilities, atol=1e-4)
        colours = [tokens.nth(i).evaluate("e => getComputedStyle(e).backgroundColor") for i in range(tokens.count())]
        assert all(c.startswith("rgba(220, 38, 38") for c in colours)   # every token tinted by its own P
        flagged = page.locator("#detected .electra-token.replaced").count()
        assert flagged == len(found.flagged(0.5))

        for text, message in (("no mask here.", "no [MASK]"), ("", "empty")):
            page.locator("#fill-text textarea").fill(text)
            page.click("#fill")
            page.wait_for_function("(m) => document.querySelector('#text-status').innerText.includes(m)",
                                   arg=message, timeout=WAIT_MS)
        page.locator("#detect-text textarea").fill("   ")
        page.click("#detect")
        page.wait_for_function("() => document.querySelector('#text-status').innerText.includes('empty')",
                               timeout=WAIT_MS)
        assert "Traceback" not in page.content()
        page.close()


def test_a_folder_that_is_not_a_run_is_one_line_and_exit_2(runs, tmp_path, capsys):
    code, _, err = run_cli(capsys, "demo", str(tmp_path))
    assert_one_line_error(code, err, "is not a run folder")
    code, _, err = run_cli(capsys, "demo", str(tmp_path / "missing"))
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run_cli(capsys, "demo", str(runs["cdcgan"]), "--port", "70000")
    assert_one_line_error(code, err, "--port must lie in 1..65535")
    (tmp_path / "config.json").write_text("{not json")
    code, _, err = run_cli(capsys, "demo", str(tmp_path))
    assert_one_line_error(code, err, "not valid JSON")


def test_an_hf_folder_gets_the_parts_it_has(text_run):
    from electra.demo.app import run_kind
    from electra.demo.text_page import TextDemo
    from electra.errors import UserError

    assert run_kind(text_run) == "text" and run_kind(text_run / "discriminator") == "hf"
    alone = TextDemo(text_run / "discriminator")
    assert alone.filler is None and alone.detector is not None
    assert 'class="electra-token' in alone.detect("the cat sat on the mat.", 0.5)
    with pytest.raises(UserError, match="no generator"):
        alone.fill("the [MASK] sat.", 5, False)
    assert TextDemo(text_run / "generator").detector is None


def test_one_rule_names_the_parts_of_a_run_or_an_hf_folder(text_run, tmp_path):
    import shutil

    from electra.errors import UserError
    from electra.text.hf_io import model_parts

    assert model_parts(text_run) == {"generator": text_run / "generator", "discriminator": text_run / "discriminator"}
    assert model_parts(text_run / "generator") == {"generator": text_run / "generator"}
    odd = tmp_path / "odd"
    shutil.copytree(text_run / "discriminator", odd)
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**config, "architectures": ["ElectraModel"]}))
    with pytest.raises(UserError, match="ElectraModel"):
        model_parts(odd)
    with pytest.raises(UserError, match="holds no ELECTRA models"):
        model_parts(tmp_path)
