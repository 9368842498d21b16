"""``basicsr-restore serve`` in a real headless browser (Debian's chromium and chromedriver, driven by selenium).

The server runs as a subprocess with a tiny IRNeXt; the page uploads a crop of a real photo with tiles and TTA and
the PNG it offers for download must be byte-for-byte what ``basicsr-restore infer`` writes for the same file and
options. Then the failures a user meets: not an image, too large a file, too many pixels; the server answers each
with a clear message and keeps serving. The browser flow is one test so that ``pytest -n`` starts one server.
"""
import ast
import base64
import http.client
import os
import shutil
import subprocess
import sys
import time
import urllib.parse

import cv2
import numpy as np
import pytest
import torch

from basicsr_restore.archs.irnext_arch import IRNeXt

from conftest import ROOT, photo, run

ARCH = ['--arch', 'IRNeXt', '--arch-args'] + [f'{k}={v}' for k, v in IRNeXt.card.tiny.items()]
MAX_MB, MAX_PIXELS = 0.5, '100x100'  # small limits, so that the test files can cross them
ENV = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')  # server and infer side by side on 2 cores
ENV.pop('BASICSR_RESTORE_NO_AUTOLOAD', None)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp('serve')
    torch.manual_seed(0)
    torch.save({'params': IRNeXt(**IRNeXt.card.tiny).state_dict()}, base / 'tiny.pth')
    from skimage import data
    cv2.imwrite(str(base / 'in.png'), data.astronaut()[70:134, 180:260, ::-1])  # 64x80: her eyes
    cv2.imwrite(str(base / 'large.png'), photo((128, 128), seed=4))  # 16384 pixels > 100x100
    cv2.imwrite(str(base / 'large.bmp'), photo((128, 128), seed=4))  # no header sniffing: checked after decoding
    noise = np.random.default_rng(0).integers(0, 256, (420, 420, 3), dtype=np.uint8)
    cv2.imwrite(str(base / 'heavy.png'), noise)  # > 0.5 MB
    (base / 'notes.png').write_bytes(b'these are my holiday notes, not a picture\n' * 20)
    return base


@pytest.fixture(scope='module')
def server(files):
    """``basicsr-restore serve`` on a free port (``--port 0``, the address read from its first lines); ``infer``
    runs on the same file meanwhile. Yields ``(url, process, stderr path, infer process)``."""
    out, err = files / 'serve.out', files / 'serve.err'
    args = [sys.executable, '-m', 'basicsr_restore.cli', 'serve', '--weights', str(files / 'tiny.pth'), '--port', '0',
            '--device', 'cpu', '--max-upload-mb', str(MAX_MB), '--max-pixels', MAX_PIXELS] + ARCH
    with open(out, 'w') as o, open(err, 'w') as e:
        proc = subprocess.Popen(args, cwd=files, env=ENV, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
    infer = subprocess.Popen([sys.executable, '-m', 'basicsr_restore.cli', 'infer', '-i', str(files / 'in.png'),
                              '-o', str(files / 'infer'), '--device', 'cpu', '--weights', str(files / 'tiny.pth'),
                              '--tile', '64', '--tta'] + ARCH, cwd=files, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        deadline, url = time.time() + 120, None
        while url is None:
            lines = [line for line in out.read_text().splitlines() if line.startswith('serving http://')]
            if lines:
                url = lines[0].split()[1]
            elif proc.poll() is not None:
                pytest.fail(f'serve exited ({proc.returncode}) before listening:\n{err.read_text()[-3000:]}')
            elif time.time() > deadline:
                pytest.fail(f'serve did not listen within 120 s:\n{err.read_text()[-3000:]}')
            else:
                time.sleep(0.2)
        yield url, proc, err, infer
    finally:
        for p in (proc, infer):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def chromium():
    """Headless Debian chromium through its chromedriver; a failure (not a skip) when either is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail('the browser test needs selenium: pip install "selenium>=4.11" (in the test extra).')
    binary = shutil.which('chromium') or shutil.which('chromium-browser')
    driver = shutil.which('chromedriver')
    if not binary or not driver:
        pytest.fail("the browser test needs Debian's chromium and chromedriver (found: chromium "
                    f'{binary or "no"}, chromedriver {driver or "no"}): apt-get install -y chromium chromium-driver '
                    '(.ci/run does it).')
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
                 '--window-size=1100,900', '--no-first-run', '--disable-extensions'):
        options.add_argument(flag)
    try:
        browser = webdriver.Chrome(options=options, service=Service(driver))
    except Exception as exc:
        pytest.fail(f'headless chromium ({binary}, driver {driver}) did not start: {type(exc).__name__}: {exc}')
    browser.set_script_timeout(60)
    return browser


class Page:
    """The demo page in the browser: choose a file, set the options, press Restore, read the outcome."""

    def __init__(self, browser, url):
        self.browser = browser
        browser.get(url)

    def el(self, id_):
        from selenium.webdriver.common.by import By
        return self.browser.find_element(By.ID, id_)

    def restore(self, path, tile=0, tta=False, timeout=120):
        from selenium.webdriver.support.ui import Select, WebDriverWait
        self.el('file').send_keys(str(path))
        WebDriverWait(self.browser, 10).until(lambda b: self.el('status').get_attribute('data-state') == 'ready')
        Select(self.el('tile')).select_by_value(str(tile))
        if self.el('tta').is_selected() != tta:
            self.el('tta').click()
        self.el('go').click()
        WebDriverWait(self.browser, timeout).until(
            lambda b: self.el('status').get_attribute('data-state') in ('done', 'error'))
        return self.el('status').get_attribute('data-state'), self.el('status').text

    def js(self, body):
        """Run async JS whose promise gives a string (``body`` is an expression)."""
        return self.browser.execute_async_script(
            'const done = arguments[arguments.length - 1];'
            f'Promise.resolve().then(() => {body}).then(done, (e) => done("JS ERROR " + e));')


def post(url, body, headers=None, query=''):
    """``POST /restore`` with http.client (127.0.0.1 only): ``(status, body text)``."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest('POST', '/restore' + query)
        for key, value in (headers or {'Content-Length': str(len(body))}).items():
            conn.putheader(key, value)
        conn.endheaders()
        if body:
            conn.send(body)
        answer = conn.getresponse()
        return answer.status, answer.read().decode('utf-8', 'replace')
    finally:
        conn.close()


def test_browser_demo(files, server, tmp_path):
    url, proc, err, infer = server
    assert url.startswith('http://127.0.0.1:'), f'serve must listen on 127.0.0.1 by default, printed {url}'
    browser = chromium()
    try:
        page = Page(browser, url)
        assert browser.find_element('css selector', '.model').text.startswith('IRNeXt')

        # 1. a photo, tiles of 64 and TTA: the downloaded PNG is what infer writes
        state, text = page.restore(files / 'in.png', tile=64, tta=True)
        assert state == 'done', text
        assert '80x64' in text and 'tiles 64' in text and 'TTA' in text, text
        assert browser.execute_script("return document.getElementById('after').naturalWidth") == 80
        link = page.el('download')
        assert link.is_displayed() and link.get_attribute('download') == 'in_restored.png'
        served = base64.b64decode(page.js(
            "fetch(document.getElementById('download').href).then((r) => r.arrayBuffer()).then((b) => {"
            "  let s = ''; for (const c of new Uint8Array(b)) s += String.fromCharCode(c); return btoa(s); })"))
        shot = tmp_path / 'serve_screenshot.png'
        browser.save_screenshot(str(shot))
        if os.environ.get('SERVE_SCREENSHOT'):
            shutil.copy(shot, os.environ['SERVE_SCREENSHOT'])
        log, _ = infer.communicate(timeout=180)
        assert infer.returncode == 0, log[-3000:]
        written = (files / 'infer' / 'in.png').read_bytes()
        mine = cv2.imdecode(np.frombuffer(served, np.uint8), cv2.IMREAD_UNCHANGED)
        theirs = cv2.imread(str(files / 'infer' / 'in.png'), cv2.IMREAD_UNCHANGED)
        assert mine is not None and mine.shape == theirs.shape == (64, 80, 3) and mine.dtype == np.uint8
        assert np.array_equal(mine, theirs), f'max difference {np.abs(mine.astype(int) - theirs).max()} levels'
        assert served == written  # the same pixels, and the same PNG encoder and settings

        # 2. not an image: the page says so, and the server answers the next upload
        state, text = page.restore(files / 'notes.png')
        assert state == 'error' and "Not an image: 'notes.png' cannot be decoded as PNG" in text, text
        state, text = page.restore(files / 'in.png')
        assert state == 'done' and 'whole image' in text, text

        # 3. too large a file: the page refuses before sending; the server refuses (413) what is sent anyway
        state, text = page.restore(files / 'heavy.png')
        assert state == 'error' and 'at most 0.5 MB' in text and '--max-upload-mb' in text, text
        answer = page.js("fetch('restore', {method: 'POST', body: new Uint8Array(600000)})"
                         ".then(async (r) => r.status + ' ' + await r.text())")
        assert answer.startswith('413 ') and 'at most 0.5 MB' in answer and '--max-upload-mb' in answer, answer

        # 4. too many pixels: the limit and the option that raises it
        state, text = page.restore(files / 'large.png')
        assert state == 'error' and '128x128' in text and '--max-pixels 100x100' in text, text
    finally:
        browser.quit()

    # the limits at the HTTP level: Content-Length is judged before any byte of the body is read
    start = time.time()
    status, text = post(url, b'', headers={'Content-Length': str(10 ** 9)})
    assert status == 413 and 'at most 0.5 MB' in text and time.time() - start < 20, (status, text)
    status, text = post(url, (files / 'large.bmp').read_bytes())  # dimensions known only once decoded
    assert status == 413 and '128x128' in text and '--max-pixels' in text, (status, text)
    status, text = post(url, (files / 'notes.png').read_bytes())
    assert status == 400 and 'Not an image' in text, (status, text)
    status, text = post(url, b'\x89PNG', query='?tile=abc')
    assert status == 400 and 'tile=' in text, (status, text)
    status, _ = post(url, (files / 'in.png').read_bytes(), query='?tile=0&tta=0')
    assert status == 200

    assert proc.poll() is None, 'the server died'
    log = err.read_text()
    assert 'Traceback' not in log, log
    refused = [line for line in log.splitlines() if 'refused' in line]
    assert len(refused) == 7 and all('\n' not in line for line in refused), log  # one line per failed request


def test_help_says_localhost_and_imports_stdlib_only():
    proc = run(['python', '-m', 'basicsr_restore.cli', 'serve', '--help'], cwd=ROOT)
    help_text = ' '.join(proc.stdout.split())
    assert 'default 127.0.0.1: this machine only' in help_text and 'to the network' in help_text, help_text
    import argparse

    import basicsr_restore.serve as serve
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args(['--weights', 'w.pth'])
    assert (args.host, args.port, args.max_upload_mb, args.max_pixels) == ('127.0.0.1', 8000, 20, '4096x4096')
    tree = ast.parse(open(serve.__file__, encoding='utf-8').read())
    top = {alias.name.split('.')[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module.split('.')[0] for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert top <= set(sys.stdlib_module_names), f'serve.py imports {top - set(sys.stdlib_module_names)} at the top'


def test_header_size_and_pixel_limits(tmp_path):
    from basicsr_restore.serve import Limits, Refused, header_size, parse_pixels
    img = photo((37, 53), seed=1)
    for ext in ('.png', '.jpg'):
        ok, data = cv2.imencode(ext, img)
        assert header_size(data.tobytes()) == (53, 37), ext
    ok, progressive = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert header_size(progressive.tobytes()) == (53, 37)
    assert header_size(cv2.imencode('.bmp', img)[1].tobytes()) is None
    assert header_size(b'\xff\xd8\xff') is None and header_size(b'') is None
    assert parse_pixels('4096x4096') == 4096 ** 2 and parse_pixels('1000000') == 10 ** 6
    with pytest.raises(ValueError, match='WIDTHxHEIGHT'):
        parse_pixels('big')
    limits = Limits(1, '10x10')
    limits.check_size(10, 10)
    with pytest.raises(Refused, match='--max-pixels 10x10'):
        limits.check_size(11, 10)
