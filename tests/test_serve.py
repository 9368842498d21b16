"""``basicsr-restore serve`` in a real headless browser (Debian's chromium and chromedriver, driven by selenium).

The server runs as a subprocess with a tiny IRNeXt; the page uploads a crop of a real photo with tiles and TTA and
the PNG it offers for download must be byte-for-byte what ``basicsr-restore infer`` writes for the same file and
options. Then the failures a user meets: not an image, too large a file, too many pixels; the server answers each
with a clear message and keeps serving. The browser flow is one test; the HTTP checks of the header limits and of
the log share its server (a module fixture). The header reader and the lock are tested in this process.
"""
import ast
import base64
import http.client
import io
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, photo, run

from basicsr_restore.archs.irnext_arch import IRNeXt

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
    cv2.imwrite(str(base / 'large.bmp'), photo((128, 128), seed=4))  # refused from the BMP header too
    cv2.imwrite(str(base / 'large.ppm'), photo((128, 128), seed=4))  # OpenCV decodes PNM: refused as a format
    (base / 'bomb.tif').write_bytes(tiff_bomb())
    noise = np.random.default_rng(0).integers(0, 256, (420, 420, 3), dtype=np.uint8)
    cv2.imwrite(str(base / 'heavy.png'), noise)  # > 0.5 MB
    (base / 'notes.png').write_bytes(b'these are my holiday notes, not a picture\n' * 20)
    return base


@pytest.fixture(scope='module')
def server(files):
    """``basicsr-restore serve`` on a free port (``--port 0``, the address read from its first lines); ``infer``
    runs on the same file meanwhile. Yields ``(url, process, stderr path, infer process)``."""
    out, err = files / 'serve.out', files / 'serve.err'
    args = [sys.executable, '-m', 'basicsr_restore.commands.cli', 'serve', '--weights', str(files / 'tiny.pth'),
            '--port', '0', '--device', 'cpu', '--max-upload-mb', str(MAX_MB), '--max-pixels', MAX_PIXELS] + ARCH
    with open(out, 'w') as o, open(err, 'w') as e:
        proc = subprocess.Popen(args, cwd=files, env=ENV, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
    infer = subprocess.Popen([sys.executable, '-m', 'basicsr_restore.commands.cli', 'infer', '-i',
                              str(files / 'in.png'), '-o', str(files / 'infer'), '--device', 'cpu', '--weights',
                              str(files / 'tiny.pth'), '--tile', '64', '--tta'] + ARCH, cwd=files, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
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


def tiff_bomb(width=12000, height=12000, rows=100):
    """A valid RGB TIFF of black rows, 4.6 kB: its ``height / rows`` deflate strips all point at one compressed
    block of ``rows`` rows. Decoded it is ``width * height * 3`` bytes (432 MB; OpenCV peaks at twice that)."""
    block = zlib.compress(bytes(width * 3 * rows), 9)
    strips = -(-height // rows)
    entries = [(256, 4, [width]), (257, 4, [height]), (258, 3, [8, 8, 8]), (259, 3, [8]), (262, 3, [2]),
               (273, 4, None), (277, 3, [3]), (278, 4, [rows]), (279, 4, [len(block)] * strips)]
    end = 8 + 2 + 12 * len(entries) + 4  # header and IFD; the longer values follow, then the block
    data_at = end + 6 + 8 * strips
    extra, ifd = b'', struct.pack('<H', len(entries))
    for tag, kind, values in entries:
        values = values or [data_at] * strips  # StripOffsets: every strip is the same block
        packed = struct.pack('<' + ('H' if kind == 3 else 'I') * len(values), *values)
        if len(packed) <= 4:
            ifd += struct.pack('<HHI', tag, kind, len(values)) + packed.ljust(4, b'\0')
        else:
            ifd += struct.pack('<HHII', tag, kind, len(values), end + len(extra))
            extra += packed
    assert end + len(extra) == data_at
    return b'II*\x00' + struct.pack('<I', 8) + ifd + struct.pack('<I', 0) + extra + block


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
    log_start = len(err.read_text())  # the lines of this test's requests are counted at the end
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
    status, text = post(url, (files / 'large.bmp').read_bytes())  # from the BMP header, as PNG's
    assert status == 413 and '128x128' in text and '--max-pixels' in text, (status, text)
    status, text = post(url, (files / 'notes.png').read_bytes())
    assert status == 400 and 'Not an image' in text, (status, text)
    status, text = post(url, b'\x89PNG', query='?tile=abc')
    assert status == 400 and 'tile=' in text, (status, text)
    status, _ = post(url, (files / 'in.png').read_bytes(), query='?tile=0&tta=0')
    assert status == 200

    assert proc.poll() is None, 'the server died'
    log = err.read_text()[log_start:]
    assert 'Traceback' not in log, log
    refused = [line for line in log.splitlines() if 'refused' in line]
    assert len(refused) == 7 and all('\n' not in line for line in refused), log  # one line per failed request


def test_help_says_localhost_and_imports_stdlib_only():
    proc = run(['python', '-m', 'basicsr_restore.commands.cli', 'serve', '--help'], cwd=ROOT)
    help_text = ' '.join(proc.stdout.split())
    assert 'default 127.0.0.1: this machine only' in help_text and 'to the network' in help_text, help_text
    import argparse

    import basicsr_restore.commands.serve as serve
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args(['--weights', 'w.pth'])
    assert (args.host, args.port, args.max_upload_mb, args.max_pixels) == ('127.0.0.1', 8000, 20, '4096x4096')
    tree = ast.parse(open(serve.__file__, encoding='utf-8').read())
    top = {alias.name.split('.')[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module.split('.')[0] for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert top <= set(sys.stdlib_module_names), f'serve.py imports {top - set(sys.stdlib_module_names)} at the top'


def vm_hwm(pid):
    """Peak resident memory of process ``pid`` in MB (Linux: VmHWM of /proc/PID/status)."""
    with open(f'/proc/{pid}/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmHWM:')) / 1024


def test_oversized_images_are_refused_from_their_header(files, server):
    """A 12000x12000 TIFF of 4.6 kB (432 MB decoded) is 413 from its header: three at once leave the server's peak
    memory where it was. A format that is not read (PPM, which OpenCV decodes) is 415; images within the limit,
    here a big-endian 16-bit TIFF and a WebP, are restored as before."""
    url, proc, err, _ = server
    bomb = (files / 'bomb.tif').read_bytes()
    assert len(bomb) < 10_000
    before = vm_hwm(proc.pid)
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: post(url, bomb, query='?name=bomb.tif'), range(3)))
    for status, text in answers:
        assert status == 413 and '12000x12000' in text and '144.0 megapixels' in text, (status, text)
        assert '--max-pixels 100x100' in text and '\n' not in text.strip(), text
    rise = vm_hwm(proc.pid) - before
    assert rise < 100, f'the server peaked {rise:.0f} MB higher on header-refused uploads (decoded: 432 MB each)'

    status, text = post(url, (files / 'large.ppm').read_bytes(), query='?name=large.ppm')
    assert status == 415 and "'large.ppm' is a PNM" in text and 'PNG, JPEG, TIFF, WebP or BMP' in text, (status, text)
    status, text = post(url, bomb[:40])  # the directory cut off
    assert status == 400 and 'TIFF header is truncated' in text, (status, text)

    import tifffile
    ok16 = photo((50, 60), seed=2, dtype=np.uint16)
    big_endian = io.BytesIO()
    tifffile.imwrite(big_endian, ok16[:, :, ::-1], byteorder='>', photometric='rgb')
    ok8 = cv2.imencode('.webp', photo((40, 30), seed=3))[1].tobytes()
    for body, shape, dtype in ((big_endian.getvalue(), (50, 60, 3), np.uint16), (ok8, (40, 30, 3), np.uint8)):
        conn = http.client.HTTPConnection(urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port,
                                          timeout=60)
        conn.request('POST', '/restore', body=body)
        answer = conn.getresponse()
        png = answer.read()
        conn.close()
        assert answer.status == 200, png[:300]
        out = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        assert out.shape == shape and out.dtype == dtype
    assert proc.poll() is None and 'Traceback' not in err.read_text()


def test_request_values_cannot_forge_log_lines(files, server):
    """A ``name`` with %0A (and the other line breaks: CR, NEL, U+2028) and a forged log text, on a restored and
    on a refused upload, and control characters (ESC, DEL, CSI) in a raw request line: one log line each, none of
    the characters kept."""
    url, proc, err, _ = server
    forged = '\n12:00:00 127.0.0.1 restored FORGED.png: 1x1\r\x85\u2028\u2029\x1b[2K\x00end'
    for body, status in (((files / 'in.png').read_bytes(), 200), ((files / 'notes.png').read_bytes(), 400)):
        start = len(err.read_text())
        got, text = post(url, body, query='?tile=0&name=' + urllib.parse.quote('photo.png' + forged))
        assert got == status, text
        new = err.read_text()[start:]
        assert new.count('\n') == 1 and 'FORGED' in new and 'photo.png12:00:00' in new, repr(new)
        assert not any(c in new[:-1] for c in '\r\x85\u2028\u2029\x1b\x00'), repr(new)
        assert 'end' in new

    start = len(err.read_text())
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(b'GET /a\x1bb\x7fc\x9bd HTTP/1.0\r\n\r\n')
        assert sock.recv(100).startswith(b'HTTP/1.0 404')
    deadline = time.time() + 10
    while err.read_text()[start:].count('\n') < 1 and time.time() < deadline:
        time.sleep(0.05)
    new = err.read_text()[start:]
    assert new.count('\n') == 1 and '/abcd' in new and '404' in new, repr(new)


def test_loggable_strips_every_line_break_and_control():
    from basicsr_restore.commands.serve import loggable, parse_options
    text = 'a\nb\rc\td\x0be\x0cf\x1cg\x7fh\x85i\x9bj\u2028k\u2029l\u202em\u2066n'
    assert loggable(text) == 'abcdefghijklmn'
    assert loggable(text).splitlines() == ['abcdefghijklmn']
    assert loggable('naïve – 東京.png') == 'naïve – 東京.png'  # printable text is kept
    assert parse_options('name=' + urllib.parse.quote('x\ny.png'), 32)[2] == 'xy.png'


class FakeModel:
    """What Demo needs of a model; restoring returns the image and counts how many run at once."""
    config = 'Fake'

    def pick_speed(self, speed):
        return None

    def restore(self, img, **kwargs):
        return img


def test_decoding_waits_for_the_lock_and_follows_the_header(monkeypatch):
    """Decoding runs under the lock that restoring holds: four uploads at once are decoded one at a time. An
    upload above --max-pixels is never decoded; a decoded size other than the header's is refused."""
    from basicsr_restore.commands.serve import Demo, Limits, Refused
    from basicsr_restore.core import imageio
    demo = Demo(FakeModel(), Limits(1, '64x64'))
    busy, peak, calls, guard = [0], [0], [], threading.Lock()
    real_decode = imageio.decode

    def decode(data, where):
        with guard:
            busy[0] += 1
            peak[0] = max(peak[0], busy[0])
        calls.append(len(data))
        time.sleep(0.05)
        with guard:
            busy[0] -= 1
        return real_decode(data, where)

    monkeypatch.setattr(imageio, 'decode', decode)
    png = cv2.imencode('.png', photo((37, 53), seed=1))[1].tobytes()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: demo.restore(png, 0, False, 'p.png'), range(4)))
    assert peak[0] == 1 and len(calls) == 4
    assert all(summary.startswith('53x37 8-bit') for _, summary in results)

    with pytest.raises(Refused, match='12000x12000') as refused:
        demo.restore(tiff_bomb(), 0, False, 'bomb.tif')
    assert refused.value.status == 413 and len(calls) == 4  # not decoded

    monkeypatch.setattr(imageio, 'decode', lambda data, where: np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(Refused, match='says 53x37 in its header but decodes to another size') as refused:
        demo.restore(png, 0, False, 'p.png')
    assert refused.value.status == 400


def encoded(ext, img, params=()):
    ok, data = cv2.imencode(ext, img, list(params))
    assert ok, ext
    return data.tobytes()


def test_header_reader_reads_every_accepted_format():
    """The size from the header of real files, each as OpenCV decodes it; truncated headers and other formats are
    one clear error each."""
    import tifffile
    from PIL import Image

    from basicsr_restore.core.image_header import HeaderError, UnsupportedImage, image_size
    img = photo((37, 53), seed=1)
    rgba = np.dstack([img, img[:, :, :1]])
    samples = {
        'png': encoded('.png', img), 'png 16-bit gray': encoded('.png', photo((37, 53), dtype=np.uint16)[:, :, 0]),
        'jpeg': encoded('.jpg', img), 'jpeg progressive': encoded('.jpg', img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        'tiff II': encoded('.tiff', img), 'webp VP8': encoded('.webp', img),
        'webp VP8L': encoded('.webp', img, [cv2.IMWRITE_WEBP_QUALITY, 101]), 'webp VP8X': encoded('.webp', rgba),
        'bmp': encoded('.bmp', img), 'bmp gray': encoded('.bmp', img[:, :, 0]),
    }
    for name, kw in (('tiff MM', {'byteorder': '>'}), ('bigtiff II', {'bigtiff': True}),
                     ('bigtiff MM 16-bit', {'bigtiff': True, 'byteorder': '>'})):
        out = io.BytesIO()
        tifffile.imwrite(out, img.astype(np.uint16) * 257 if '16' in name else img, photometric='rgb', **kw)
        samples[name] = out.getvalue()
    out = io.BytesIO()
    Image.fromarray(img[:, :, ::-1]).save(out, 'JPEG', exif=Image.Exif().tobytes(), comment=b'APP and COM first')
    samples['jpeg exif'] = out.getvalue()
    top_down = bytearray(samples['bmp'])  # a negative height: the same rows stored top-down
    top_down[22:26] = struct.pack('<i', -37)
    samples['bmp top-down'] = bytes(top_down)
    core = struct.pack('<2sIHHIIHHHH', b'BM', 26 + 53 * 37 * 3 + 37 * 1, 0, 0, 26, 12, 53, 37, 1, 24)
    samples['bmp core header'] = core + b''.join(img[::-1][y].tobytes() + b'\0' for y in range(37))  # rows to 4 B

    for name, data in samples.items():
        assert image_size(data) == (53, 37), name
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert decoded is not None and decoded.shape[:2] == (37, 53), name  # the reader agrees with the decoder
        header_end = {'tiff II': 8, 'tiff MM': 8}.get(name, 20)  # a cut inside the header or before its end
        for cut in range(header_end + 1):
            with pytest.raises(HeaderError) as error:  # or UnsupportedImage, its kind: too short to recognise
                image_size(data[:cut])
            assert '\n' not in str(error.value) and str(error.value).endswith('.'), (name, cut, error.value)
        with pytest.raises(HeaderError, match='header is truncated'):
            image_size(data[:header_end])
    assert image_size(tiff_bomb()) == (12000, 12000)
    with pytest.raises(HeaderError, match='TIFF header is truncated'):
        image_size(samples['tiff II'][:len(samples['tiff II']) // 2])  # OpenCV writes the directory at the end
    with pytest.raises(HeaderError, match='no frame header'):
        image_size(b'\xff\xd8\xff\xda\x00\x08' + bytes(20))  # scan data before any SOFn
    start = time.time()  # crafted to make the reader loop: bounded, and quick
    with pytest.raises(HeaderError, match='more than 4096 segments'):
        image_size(b'\xff\xd8' + b'\xff\xfe\x00\x02' * 100_000)
    with pytest.raises(HeaderError, match='truncated'):
        image_size(b'\xff\xd8' + b'\xff' * 20 * 2 ** 20)  # 20 MB of fill bytes
    assert time.time() - start < 1

    for ext, kind in (('.ppm', 'PNM'), ('.pgm', 'PNM'), ('.hdr', 'Radiance HDR'), ('.jp2', 'JPEG 2000'),
                      ('.gif', 'GIF'), ('.pfm', 'PFM'), ('.ras', 'Sun raster')):
        if not cv2.haveImageWriter('x' + ext):
            continue  # this OpenCV build does not write it
        other = {'.hdr': img.astype(np.float32) / 255, '.pfm': img.astype(np.float32) / 255, '.pgm': img[:, :, 0]}
        data = encoded(ext, other.get(ext, img))
        with pytest.raises(UnsupportedImage, match=f'an? {kind}.*accepted are PNG, JPEG, TIFF, WebP or BMP'):
            image_size(data)
    for other in (b'', b'these are my holiday notes', bytes(64)):
        with pytest.raises(UnsupportedImage, match='not an image') as error:
            image_size(other)
        assert error.value.format is None
    out = io.BytesIO()
    tifffile.imwrite(out, np.zeros((5, 6, 6), np.uint8), photometric='minisblack', planarconfig='contig')
    with pytest.raises(UnsupportedImage, match='6 channels'):
        image_size(out.getvalue())


def test_pixel_limits():
    from basicsr_restore.commands.serve import Limits, Refused, parse_pixels
    assert parse_pixels('4096x4096') == 4096 ** 2 and parse_pixels('1000000') == 10 ** 6
    with pytest.raises(ValueError, match='WIDTHxHEIGHT'):
        parse_pixels('big')
    limits = Limits(1, '10x10')
    limits.check_size(10, 10)
    with pytest.raises(Refused, match='--max-pixels 10x10'):
        limits.check_size(11, 10)
