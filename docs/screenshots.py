"""TensorBoard as users see it: train the default example, open TensorBoard on the run in
headless Chromium, and save each tab as the documentation's screenshot.

    python docs/screenshots.py            # rewrites docs/tensorboard-*.png

It needs TensorBoard (the ``dev`` extra), Selenium (``dev`` too) and Debian's Chromium with
its driver (``apt-get install chromium chromium-driver``).  ``tests/test_tensorboard_browser.py``
drives the same functions and checks that each tab shows the run's tags, so a screenshot that
no longer matches what TensorBoard draws fails a test before it reaches the docs.
"""

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
WINDOW = (1280, 800)

# Debian's names first, then other distributions' (and Selenium's own defaults if unset).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER_NAMES = ("chromedriver",)

# The text the page shows, through every shadow root and same-origin frame: TensorBoard's
# dashboards are web components, so `document.body.innerText` misses most of it.
DEEP_TEXT = """
const parts = [];
const walk = (node) => {
  if (node.nodeType === Node.TEXT_NODE) { parts.push(node.textContent); return; }
  if (node.tagName === 'STYLE' || node.tagName === 'SCRIPT' || node.tagName === 'NOSCRIPT') return;
  // only what is shown: the tabs already visited stay in the page, hidden
  if (node.nodeType === Node.ELEMENT_NODE && !node.checkVisibility({visibilityProperty: true})) return;
  if (node.shadowRoot) walk(node.shadowRoot);
  if (node.tagName === 'IFRAME') { try { walk(node.contentDocument); } catch (e) {} }
  for (const child of node.childNodes) walk(child);
};
walk(document);
return parts.join(' ').replace(/\\s+/g, ' ');
"""


def find_browser():
    """``(chromium, chromedriver)`` paths, or ``None`` where either is missing."""
    chromium = next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    driver = next(filter(None, map(shutil.which, DRIVER_NAMES)), None)
    return (chromium, driver) if chromium and driver else None


def default_config(logdir):
    """The built-in default example (``plugnet train`` with no config), into ``logdir``."""
    from framework.config import default_config as load_default

    config = load_default()
    config["logging"] = {"logdir": str(logdir)}
    return config


def train_default_example(logdir):
    """Train the default example into ``logdir`` (about five seconds); return its summary."""
    import framework

    return framework.run(default_config(logdir))


def run_moons_sweep(logdir):
    """The moons sweep (examples/sweep_moons.toml, 12 short trials) into ``logdir``."""
    import framework
    from framework.config import load_config

    config = load_config(ROOT / "examples" / "sweep_moons.toml")
    return framework.sweep(config, logdir=str(logdir), jobs=1)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def tensorboard(logdir, timeout=60):
    """A TensorBoard serving ``logdir`` on a free local port; yields its base URL and stops
    it (by its own process) afterwards."""
    port = free_port()
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: nothing reads it while it runs
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            Path(logdir).name,  # as a user types it: the pages show the name, not a temporary path
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--reload_interval",
            "1",
        ],
        cwd=Path(logdir).parent,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"tensorboard ended: {log.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/data/runs", timeout=2) as answer:
                    if answer.status == 200 and answer.read().strip() not in (b"", b"[]"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"tensorboard did not serve {logdir} within {timeout} s")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextlib.contextmanager
def browser(window=WINDOW):
    """Headless Chromium driven by Selenium through the system's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_browser()
    if found is None:
        raise RuntimeError(
            "chromium and chromedriver are needed: apt-get install chromium chromium-driver"
        )
    chromium, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI and containers run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={window[0]},{window[1]}",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    # The page's own size, whatever the headless window's frame takes.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": window[0], "height": window[1], "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        yield driver
    finally:
        driver.quit()


# The first shown element matching a CSS selector, looking inside shadow roots too.
DEEP_QUERY = """
const [selector, text] = arguments;
const search = (root) => {
  for (const el of root.querySelectorAll(selector)) {
    const shown = el.checkVisibility({visibilityProperty: true});  // hidden tabs stay in the page
    if (shown && (!text || (el.textContent || '').trim() === text)) return el;
  }
  for (const el of root.querySelectorAll('*')) {
    if (el.shadowRoot) { const hit = search(el.shadowRoot); if (hit) return hit; }
  }
  return null;
};
return search(document);
"""


def page_text(driver):
    return driver.execute_script(DEEP_TEXT)


def deep_find(driver, selector, text=None):
    """The first shown element matching ``selector`` (with exactly ``text``, if given), in
    the page or any shadow root; ``None`` if there is none."""
    return driver.execute_script(DEEP_QUERY, selector, text)


def filter_tags(driver, pattern):
    """Type ``pattern`` into the tab's tag filter, as a user narrowing the cards would."""
    box = deep_find(driver, "paper-input[label^='Filter tags']")
    field = box and driver.execute_script(
        "const box = arguments[0];return (box.shadowRoot || box).querySelector('input');",
        box,
    )
    if field is None:
        raise AssertionError("the tab has no tag filter")
    field.send_keys(pattern)
    time.sleep(2)


def wait_for(driver, what, expect, timeout=60):
    """Wait until the page shows every string in ``expect``; return its text.  Raises
    ``AssertionError`` naming ``what`` and the strings missing."""
    deadline = time.monotonic() + timeout
    while True:
        text = page_text(driver)
        missing = [item for item in expect if item not in text]
        if not missing:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what} did not show {missing} within {timeout} s; it shows: {text[:2000]}"
            )
        time.sleep(0.5)


def open_tab(driver, url, plugin, expect, pattern=None, timeout=60):
    """Open TensorBoard's ``plugin`` tab, type ``pattern`` (if any) into its tag filter, and
    wait until it shows every string in ``expect``; return the text it shows."""
    driver.get(f"{url}/#{plugin}")
    if pattern:
        wait_for(driver, f"TensorBoard's {plugin} tab", ["Filter tags"], timeout)
        filter_tags(driver, pattern)
    wait_for(driver, f"TensorBoard's {plugin} tab", expect, timeout)
    time.sleep(1.5)  # let charts finish their transitions before a screenshot
    return page_text(driver)


def expand_graph_groups(driver, names):
    """Expand the Graphs tab's groups ``names`` (double-click, as a user would)."""
    script = """
    const [name] = arguments;
    const find = (root) => {
      for (const el of root.querySelectorAll('*')) {
        if (el.shadowRoot) { const hit = find(el.shadowRoot); if (hit) return hit; }
      }
      return root.querySelector(`g.node[data-name="${name}"]`);
    };
    const node = find(document);
    if (!node) return false;
    const target = node.querySelector('.nodeshape') || node;
    target.dispatchEvent(new MouseEvent('dblclick', {bubbles: true, composed: true}));
    return true;
    """
    for name in names:
        driver.execute_script(script, name)
        time.sleep(1.5)
    # the sidebar's "Fit to screen", which calls the same method
    scene = deep_find(driver, "tf-graph-scene")
    if scene is not None:
        driver.execute_script("arguments[0].fit();", scene)
        time.sleep(1.5)


# What each tab must show of the default example's run: (tab, tag filter typed first or
# None, the strings the tab must show, the screenshot's file name).  TensorBoard draws cards
# only as they scroll into view, so a filter brings the tags checked onto the first screen.
DEFAULT_RUN_TABS = [
    (
        "scalars",
        "^(loss|accuracy|lr)$",
        ["tag: loss", "tag: accuracy", "tag: lr", "moons/train", "moons/test"],
        "tensorboard-scalars.png",
    ),
    ("images", None, ["tag: decision_boundary", "step 1,500"], "tensorboard-images.png"),
    ("graphs", None, ["dense_0", "dense_1", "loss", "labels", "input"], "tensorboard-graph.png"),
    (
        "text",
        None,
        ["tag: config", "tag: model", '"loss": "cross_entropy"', "dense_1", "total parameters"],
        "tensorboard-text.png",
    ),
    (
        "histograms",
        "^dense_0/",
        ["tag: dense_0/weights", "tag: dense_0/activations", "tag: dense_0/weights_grad"],
        "tensorboard-histograms.png",
    ),
]
# Each layer's operations, shown once the graph's layer groups are opened.
GRAPH_OPS = ["matmul", "bias_add", "tanh", "softmax", "weights", "bias"]


def default_run_tabs(url, out=None):
    """Check every tab of ``DEFAULT_RUN_TABS`` against the TensorBoard at ``url`` (serving a
    directory that holds the default example as ``moons``); with ``out``, save each tab's
    screenshot there.  Returns ``{tab: the text it shows}``."""
    shown = {}
    with browser() as driver:
        for tab, pattern, expect, picture in DEFAULT_RUN_TABS:
            shown[tab] = open_tab(driver, url, tab, expect, pattern)
            if tab == "graphs":
                expand_graph_groups(driver, ["dense_1", "dense_0"])
                shown[tab] = wait_for(driver, "the Graphs tab's opened layers", GRAPH_OPS)
            if out is not None:
                driver.save_screenshot(str(Path(out) / picture))
    return shown


def hparams_tab(url, out=None, window=(1560, 700)):
    """The HParams tab of the moons sweep's TensorBoard: every trial with its parameters."""
    with browser(window) as driver:
        text = open_tab(driver, url, "hparams", ["trial-0000", "trial-0011", "test/accuracy"])
        if out is not None:
            driver.save_screenshot(str(Path(out) / "tensorboard-hparams.png"))
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DOCS), help="where the PNG files go (default: docs/)")
    parser.add_argument("--keep", help="keep the runs in this directory instead of a temporary one")
    args = parser.parse_args(argv)
    if find_browser() is None:
        sys.exit("chromium and chromedriver are needed: apt-get install chromium chromium-driver")
    os.makedirs(args.out, exist_ok=True)
    with contextlib.ExitStack() as stack:
        root = Path(args.keep or stack.enter_context(tempfile.TemporaryDirectory()))
        train_default_example(root / "example" / "runs" / "moons")
        with tensorboard(root / "example" / "runs") as url:
            default_run_tabs(url, args.out)
        run_moons_sweep(root / "sweep" / "runs")
        with tensorboard(root / "sweep" / "runs") as url:
            hparams_tab(url, args.out)
    names = [picture for *_, picture in DEFAULT_RUN_TABS] + ["tensorboard-hparams.png"]
    print(f"screenshots in {args.out}: {', '.join(names)}")


if __name__ == "__main__":
    main()
