"""report.html in a real headless browser (Chromium from the OS packages): no console errors, every
curve drawn, a legend click hides a curve, a screenshot to look at."""

import pytest

from .browser import driver, unavailable
from .test_report_views import page_data

pytestmark = pytest.mark.slow  # a headless Chromium opens the report


@pytest.fixture(scope="module")
def browser():
    reason = unavailable()
    if reason:
        pytest.skip(f"no headless browser: {reason}")
    d = driver(1500, 1000)
    yield d
    d.quit()


DRAWN = """
const gd = document.getElementById('rd-plot');
return Array.from(gd.querySelectorAll('.scatterlayer .trace')).map(t => {
  const line = t.querySelector('path.js-line');
  return line ? line.getAttribute('d').length : 0;
});
"""


def test_report_in_headless_chromium(small_report, browser, tmp_path):
    """The default report of jpeg and webp on 3 photos (conftest's ``small_report``)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    expected = [t["name"] for t in page_data(small_report)["rd"]["psnr-rgb"]["data"]]
    browser.get((small_report / "report.html").resolve().as_uri())
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(
        "return document.querySelectorAll('#rd-plot .scatterlayer .trace').length") == len(expected))
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    assert all(length > 20 for length in browser.execute_script(DRAWN)), "every curve has a drawn line"
    legend = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#rd-plot .legend .traces .legendtext")]
    assert legend == expected and "jpeg (anchor)" in legend

    # click the legend entry of webp: its curve is hidden, the other stays
    toggles = browser.find_elements(By.CSS_SELECTOR, "#rd-plot .legend .traces .legendtoggle")
    toggles[legend.index(next(n for n in legend if n.startswith("webp")))].click()
    WebDriverWait(browser, 10).until(lambda d: len(d.execute_script(DRAWN)) == len(expected) - 1)
    visible = browser.execute_script("return document.getElementById('rd-plot').data.map(t => t.visible)")
    assert visible.count("legendonly") == 1

    # the metric selector redraws the plot for another metric
    browser.execute_script("const s = document.getElementById('rd-metric'); s.value = 'psnr-y';"
                           "s.dispatchEvent(new Event('change'));")
    WebDriverWait(browser, 10).until(lambda d: "psnr-y" in d.execute_script(
        "return document.getElementById('rd-plot').layout.title.text"))
    assert browser.execute_script("return document.getElementById('thumb').src").startswith("data:image/jpeg")
    shot = tmp_path / "report.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    assert not [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
