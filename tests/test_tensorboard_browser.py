"""TensorBoard as users see it: the default example's finished run opened in TensorBoard in
headless Chromium, each tab checked for the run's tags.  The same code
(``docs/screenshots.py``) makes the documentation's screenshots, so they cannot go stale.

Skips where Chromium and its driver are missing (``apt-get install chromium
chromium-driver``; ``.ci/run`` installs them) or Selenium or TensorBoard is not installed."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("tensorboard")
pytest.importorskip("selenium")

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "screenshots.py"
spec = importlib.util.spec_from_file_location("screenshots", SCRIPT)
screenshots = importlib.util.module_from_spec(spec)
spec.loader.exec_module(screenshots)

pytestmark = pytest.mark.skipif(
    screenshots.find_browser() is None,
    reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def shown(tmp_path_factory):
    """The text each tab shows of a finished default run, and the screenshots taken."""
    root = tmp_path_factory.mktemp("tensorboard_browser")
    screenshots.train_default_example(root / "runs" / "moons")
    (root / "pictures").mkdir()
    with screenshots.tensorboard(root / "runs") as url:
        text = screenshots.default_run_tabs(url, root / "pictures")
    return text, root / "pictures"


@pytest.mark.parametrize("tab", ["scalars", "images", "graphs", "text", "histograms"])
def test_each_tab_shows_the_runs_tags(shown, tab):
    text, _ = shown
    expected = next(expect for name, _, expect, _ in screenshots.DEFAULT_RUN_TABS if name == tab)
    assert all(item in text[tab] for item in expected)  # open_tab waited for each of these


def test_scalars_tab_shows_train_and_test_runs_of_every_metric(shown):
    text, _ = shown
    for tag in ("tag: loss", "tag: accuracy", "tag: lr"):
        assert tag in text["scalars"]
    assert "moons/train" in text["scalars"] and "moons/test" in text["scalars"]


def test_graphs_tab_opens_each_layer_into_its_operations(shown):
    text, _ = shown
    for op in screenshots.GRAPH_OPS:
        assert op in text["graphs"]


def test_text_tab_shows_the_config_and_the_model_summary(shown):
    text, _ = shown
    assert '"optimizer"' in text["text"] and "total parameters" in text["text"]


def test_screenshots_are_whole_pages(shown):
    from PIL import Image

    _, pictures = shown
    names = sorted(p.name for p in pictures.iterdir())
    assert names == sorted(picture for *_, picture in screenshots.DEFAULT_RUN_TABS)
    for path in pictures.iterdir():
        with Image.open(path) as image:
            assert image.size == screenshots.WINDOW
            # a page, not a blank: TensorBoard's orange header and the tab's content
            assert len(image.convert("RGB").getcolors(1 << 20)) > 50
