"""The HTML report in a real headless Chromium, offline: what its script renders, the name filter, the threshold
slider, hostile names that must stay text, a 90,000-pair mapping that must stay virtualised, and a screenshot
that must show something.

Chromium is driven two ways: its command line (`--dump-dom`) and chromedriver's W3C HTTP API on localhost
through plain urllib. The tests skip, saying why, when `chromium` or `chromedriver` is not installed (Debian:
`apt-get install chromium chromium-driver`).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from automap.records import Alternative, Endpoint, Match, NameMapping
from automap.report.html import write_html
from tests.test_report_html import sample_mapping

_CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
_DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    _CHROMIUM is None or _DRIVER is None,
    reason="needs headless Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)",
)
# no network, no background services, no first-run UI; root in a container needs --no-sandbox
_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]
_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class Browser:
    """A chromedriver session spoken to over the W3C WebDriver HTTP API."""

    def __init__(self, base: str, session: str) -> None:
        self.base, self.session = base, session

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return _request(method, f"{self.base}/session/{self.session}{path}", body)

    def open(self, path: Path, fragment: str = "") -> None:
        self.call("POST", "/url", {"url": path.as_uri() + fragment})
        self.wait('return document.documentElement.getAttribute("data-ready") === "1"')

    def run(self, script: str, *args: Any) -> Any:
        return self.call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait(self, script: str, *args: Any, timeout: float = 20.0) -> Any:
        """Poll until the script returns something truthy (the page debounces its inputs)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.run(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                msg = f"timed out waiting for: {script}"
                raise AssertionError(msg)
            time.sleep(0.05)

    def type_into(self, css: str, text: str) -> None:
        element = self.call("POST", "/element", {"using": "css selector", "value": css})[_ELEMENT]
        self.call("POST", f"/element/{element}/value", {"text": text})

    def click(self, css: str) -> None:
        element = self.call("POST", "/element", {"using": "css selector", "value": css})[_ELEMENT]
        self.call("POST", f"/element/{element}/click", {})

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("GET", "/screenshot"))


def _request(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")["value"]
    except urllib.error.HTTPError as error:
        msg = f"{method} {url}: {error.code} {error.read()[:500]!r}"
        raise AssertionError(msg) from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    port = _free_port()
    log = tmp_path_factory.mktemp("chromedriver") / "log.txt"
    with log.open("wb") as sink:
        driver = subprocess.Popen([str(_DRIVER), f"--port={port}"], stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError, ValueError):
                if _request("GET", f"{base}/status")["ready"]:
                    break
            if time.monotonic() > deadline or driver.poll() is not None:
                pytest.fail(f"chromedriver did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        profile = tmp_path_factory.mktemp("profile")
        options = {"binary": _CHROMIUM, "args": [*_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1000"]}
        capabilities = {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}
        session = _request("POST", f"{base}/session", {"capabilities": capabilities})["sessionId"]
        yield Browser(base, session)
        with contextlib.suppress(AssertionError, OSError):
            _request("DELETE", f"{base}/session/{session}")
    finally:
        driver.terminate()
        driver.wait(timeout=30)


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_html(sample_mapping(), path)
    return path


def test_dump_dom_shows_the_numbers_the_script_computed(sample_report: Path, tmp_path: Path) -> None:
    """The written page says 2 doubtful at 0.50; the script recounts at the threshold the address asks for."""
    command = [str(_CHROMIUM), *_FLAGS, f"--user-data-dir={tmp_path}", "--virtual-time-budget=5000", "--dump-dom"]
    result = subprocess.run(
        [*command, sample_report.as_uri() + "#threshold=0.9"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert '<html lang="en" data-ready="1">' in dom
    # below 0.9 and not reviewed: 0.8, 0.6, 0.45, 0.3 (the 0.2 pair is pinned); plus one target without a source
    assert '<dd data-k="doubtful">4</dd>' in dom
    assert '<strong data-k="review">5</strong>' in dom
    assert '<output id="thr-out" for="thr">0.90</output>' in dom
    assert dom.count('<li class="item lvl-') == 5
    assert 'Needs review (<span data-k="review-listed">5</span>)' in dom


def test_filter_narrows_rows_and_the_review_list(browser: Browser, sample_report: Path) -> None:
    browser.open(sample_report)
    rows = browser.run("return [...document.querySelectorAll('#tree .row.param')].map(r => r.dataset.name)")
    assert rows == [p.target for p in sample_mapping().pairs]  # small: everything expanded, in target order
    assert browser.run("return document.querySelectorAll('#review-list li.item').length") == 3
    browser.type_into("#filter", "BLOCKS.0")  # case-insensitive, matches target or source names
    browser.wait("return document.getElementById('tree-count').textContent.includes('match')")
    rows = browser.run("return [...document.querySelectorAll('#tree .row.param')].map(r => r.dataset.name)")
    assert rows == [
        "backbone.blocks.0.q.weight",
        "backbone.blocks.0.k.weight",
        "backbone.blocks.0.v.weight",
        "backbone.blocks.0.proj_w",
        "backbone.blocks.0.norm.gamma",
    ]
    listed = browser.run("return [...document.querySelectorAll('#review-list li.item')].map(r => r.dataset.target)")
    assert listed == ["backbone.blocks.0.norm.gamma", "backbone.blocks.0.proj_w"]  # most doubtful first
    browser.type_into("#filter", "\ue003" * 20 + "fc.")  # backspaces, then a source-side name
    browser.wait("return document.querySelectorAll('#tree .row.param').length === 1")
    assert browser.run("return document.querySelector('#tree .row.param').dataset.name") == "head.weight"
    # the source arrangement lists source parameters, with the one nobody uses
    browser.type_into("#filter", "\ue003" * 20)
    browser.click('input[name="by"][value="s"]')
    browser.wait("return document.getElementById('head-left').textContent === 'source'")
    unused = browser.run("return [...document.querySelectorAll('#tree .row.lvl-unused')].map(r => r.dataset.name)")
    assert unused == ["blocks.0.unused.weight"]
    # selecting it tells which target had it as runner-up
    browser.click("#tree .row.lvl-unused button.link")
    detail = browser.wait("return document.getElementById('detail').textContent")
    assert "No target uses it." in detail and "Runner-up forbackbone.blocks.0.proj_w (0.41)" in detail


def test_threshold_slider_reflags_pairs(browser: Browser, sample_report: Path) -> None:
    browser.open(sample_report)
    assert browser.run("return document.querySelector('[data-k=doubtful]').textContent") == "2"
    browser.run("const s = document.getElementById('thr'); s.value = '0.7'; s.dispatchEvent(new Event('input'));")
    browser.wait("return document.querySelector('[data-k=doubtful]').textContent === '3'")  # 0.6 joins
    assert browser.run("return document.querySelectorAll('#review-list li.item').length") == 4
    assert browser.run("return document.querySelectorAll('#hist .bar.below').length") == 14  # bins up to 0.70
    flagged = browser.run("return [...document.querySelectorAll('#tree .row.lvl-low')].map(r => r.dataset.name)")
    assert flagged == ["backbone.blocks.0.v.weight", "backbone.blocks.0.proj_w", "backbone.blocks.0.norm.gamma"]
    # readable without colour: each flagged row says so in text
    texts = browser.run("return [...document.querySelectorAll('#tree .row.lvl-low .badge')].map(b => b.textContent)")
    assert all(t.startswith("\u26a0") and "doubtful" in t for t in texts)


def test_print_shows_every_row_and_hides_the_controls(browser: Browser, tmp_path: Path) -> None:
    path = tmp_path / "hundred.html"
    write_html(_large_mapping(10), path)
    browser.open(path)
    browser.click("#expand")
    rows = 2 + 10 * 12 + 100  # model, layers, 12 modules per layer, 100 parameters
    assert browser.run("return document.getElementById('tree-count').textContent") == "100 parameters"
    assert browser.run("return document.querySelectorAll('#tree .row').length") < 60  # virtualised on screen
    browser.call("POST", "/goog/cdp/execute", {"cmd": "Emulation.setEmulatedMedia", "params": {"media": "print"}})
    try:
        browser.run("window.dispatchEvent(new Event('beforeprint'))")
        shown = browser.run(
            "return ['controls', 'expand', 'more'].map(id => getComputedStyle(document.getElementById(id)).display)"
        )
        assert shown == ["none", "none", "none"]
        assert browser.run("return getComputedStyle(document.getElementById('tree')).overflow") == "visible"
        assert browser.run("return document.querySelectorAll('#tree .row').length") == rows
    finally:
        browser.run("window.dispatchEvent(new Event('afterprint'))")
        browser.call("POST", "/goog/cdp/execute", {"cmd": "Emulation.setEmulatedMedia", "params": {"media": ""}})


def test_hostile_names_stay_text(browser: Browser, tmp_path: Path) -> None:
    hostile_source = "</script><script>document.title='pwned';window.pwned=1</script>"
    hostile_target = "<img src=x onerror=\"document.title='pwned';window.pwned=1\">"
    mapping = sample_mapping(qkv=hostile_source, gamma=hostile_target, source_path=f"/{hostile_source}.pth")
    path = tmp_path / "hostile.html"
    write_html(mapping, path)
    browser.open(path)
    browser.run("document.querySelectorAll('#review-list li.item').forEach(li => li.scrollIntoView())")
    time.sleep(0.3)  # an injected image would have fired its error handler by now
    title = browser.run("return document.title")
    assert title.startswith("automap report: ") and title.endswith(" \u2192 template.ckpt") and "pwned" not in title
    assert browser.run("return window.pwned === undefined") is True
    assert browser.run("return document.querySelectorAll('img').length") == 0
    assert browser.run("return document.scripts.length") == 2
    names = browser.run("return [...document.querySelectorAll('#tree .row.param')].map(r => r.dataset.name)")
    assert hostile_target in names
    partners = browser.run("return [...document.querySelectorAll('#tree .partner')].map(p => p.textContent)")
    assert hostile_source in partners  # shown as the text it is
    # nothing was fetched: the page loaded no resource at all
    assert browser.run("return performance.getEntriesByType('resource').length") == 0


def _large_mapping(layers: int) -> NameMapping:
    leaves = (
        ("attention.wq.weight", "self_attn.q_proj.weight"),
        ("attention.wk.weight", "self_attn.k_proj.weight"),
        ("attention.wv.weight", "self_attn.v_proj.weight"),
        ("attention.wo.weight", "self_attn.o_proj.weight"),
        ("attention.wo.bias", "self_attn.o_proj.bias"),
        ("feed_forward.w1.weight", "mlp.gate_proj.weight"),
        ("feed_forward.w2.weight", "mlp.down_proj.weight"),
        ("feed_forward.w3.weight", "mlp.up_proj.weight"),
        ("attention_norm.weight", "input_layernorm.weight"),
        ("ffn_norm.weight", "post_attention_layernorm.weight"),
    )
    evidence = {"shape": 1.0, "leaf": 0.5, "path": 0.75, "numbers": 1.0}
    pairs = []
    for layer in range(layers):
        for number, (target, source) in enumerate(leaves):
            confidence = 0.4 if number == 8 else 1.0
            alternative = (Alternative(f"model.layers.{layer}.{leaves[9][1]}", 0.3),) if number == 8 else ()
            pairs.append(
                Match(
                    f"model.layers.{layer}.{target}",
                    f"model.layers.{layer}.{source}",
                    confidence,
                    (),
                    (64,),
                    (64,),
                    evidence,
                    alternative,
                    labels={"decided_by": "names and structure"},
                )
            )
    n = len(pairs)
    return NameMapping(Endpoint("big.pth", "pytorch", n), Endpoint("big.ckpt", "mindspore", n), tuple(pairs))


@pytest.mark.slow
def test_a_90000_pair_mapping_opens_collapsed_and_stays_virtualised(browser: Browser, tmp_path: Path) -> None:
    mapping = _large_mapping(9000)
    path = tmp_path / "large.html"
    write_html(mapping, path)
    size = path.stat().st_size
    print(f"90,000-pair report: {size} bytes, {size / len(mapping.pairs):.0f} bytes per pair")
    browser.open(path)
    assert browser.run("return document.querySelector('[data-k=pairs]').textContent") == "90000"
    assert browser.run("return document.querySelector('[data-k=doubtful]').textContent") == "9000"
    # collapsed by default: "model" and "layers", the 9,000 layers folded away
    assert browser.run("return document.querySelectorAll('#tree .row').length") == 2
    assert browser.run("return document.querySelectorAll('#review-list li.item').length") == 100  # a page at a time
    browser.click("#expand")
    browser.wait("return document.querySelectorAll('#tree .row.param').length > 0")
    rows_in_dom = browser.run("return document.querySelectorAll('#tree .row').length")
    height = browser.run("return document.getElementById('tree-inner').getBoundingClientRect().height")
    # model, layers; per layer: the layer, attention, wq..wo, feed_forward, w1..w3, the two norms
    modules = 2 + 9000 * (1 + 1 + 4 + 1 + 3 + 2)
    assert rows_in_dom < 200  # only what is in view exists
    assert height == (modules + 90000) * 24
    browser.run("const t = document.getElementById('tree'); t.scrollTop = t.scrollHeight;")
    last_row = "const r = document.querySelectorAll('#tree .row.param'); return r[r.length - 1].dataset.name"
    browser.wait(last_row + " === arguments[0]", mapping.pairs[-1].target)  # rendered on the next frame
    # the filter finds one layer's parameters among 90,000
    browser.type_into("#filter", "layers.8999.")
    browser.wait("return document.getElementById('tree-count').textContent.startsWith('10 parameters of 90000')")
    assert browser.run("return document.querySelectorAll('#tree .row.param').length") == 10


def test_screenshot_of_a_real_report_is_not_blank(browser: Browser, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    ms = pytest.importorskip("mindspore")
    image = pytest.importorskip("PIL.Image")
    from automap.engine.inference import infer_mapping
    from automap.io import load_checkpoint
    from tests import _convert_nets as nets

    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    torch.save(nets.torch_net().state_dict(), tmp_path / "net.pth")
    ms.save_checkpoint(nets.mindspore_net(), str(tmp_path / "net.ckpt"))
    source, target = load_checkpoint(tmp_path / "net.pth"), load_checkpoint(tmp_path / "net.ckpt")
    mapping = infer_mapping(source, target)
    path = tmp_path / "net.html"
    write_html(mapping, path, source_table=source, target_table=target)
    browser.open(path)
    assert browser.run("return document.querySelector('[data-k=pairs]').textContent") == str(
        sum(1 for p in mapping.pairs if p.source is not None)
    )
    png = browser.screenshot()
    picture = image.open(io.BytesIO(png)).convert("RGB")
    assert picture.size[0] >= 1000
    pixels = np.asarray(picture, dtype=np.uint32).reshape(-1, 3)
    non_white = float((pixels.min(axis=1) < 235).mean())
    colours = len(np.unique(pixels[:, 0] << 16 | pixels[:, 1] << 8 | pixels[:, 2]))
    print(f"screenshot: {picture.size}, {colours} colours, {non_white:.1%} non-white")
    assert colours > 50
    assert non_white > 0.03
