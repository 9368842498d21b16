"""``basicsr-restore serve``: a browser demo of a trained network (drop a photo, see before and after, download).

One page (``GET /``) with a little inline JavaScript that POSTs the file's raw bytes to ``/restore?tile=N&tta=0|1``
and shows the PNG that comes back beside the original. The server is the standard library's
``ThreadingHTTPServer``; one network is in memory and one request restores at a time (a lock), the others wait.

* **Same result as infer**: the upload is decoded by :func:`basicsr_restore.core.imageio.decode` and restored by the
  path of ``basicsr-restore infer`` (padding, tiles, TTA, 8/16-bit, gray, alpha); the PNG holds what ``infer``
  would write for that file and those options.
* **Limits**: uploads above ``--max-upload-mb`` are refused from their Content-Length before any byte is read
  (413). The width and height come from the image's header (:mod:`basicsr_restore.core.image_header`: PNG, JPEG,
  TIFF, WebP, BMP) before any pixel is decoded: above ``--max-pixels`` is 413, another format (GIF, PNM, EXR,
  HDR, JPEG 2000, AVIF...) 415, a damaged header or a body that is not an image 400; a decoded image whose size
  differs from its header is refused too. Every message says what the limit is and which option raises it.
  Decoding, restoring and encoding happen under the one lock: one image is in memory at a time.
* **Log**: a failed request is answered and logged in one line; the server keeps serving. Every logged text
  goes through :func:`loggable` (control characters, C1 and line/paragraph separators removed), so no request
  value (the ``name`` label, the request line, an error's text) can write a line of its own.
* **Network**: it listens on 127.0.0.1 (this machine only) unless ``--host`` says otherwise; there is no
  authentication, so another host exposes the demo, and the machine's CPU/GPU, to whoever can reach it.
"""
import html
import importlib.resources
import json
import socket
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MB = 1024 * 1024
DRAIN_LIMIT = 64 * MB  # a refused upload up to this size is read and dropped, so the browser sees the answer
TILE_CHOICES = (0, 64, 96, 128, 256, 512, 1024)


class Refused(Exception):
    """A request answered with ``status`` and the one-line ``message`` (shown on the page, logged)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------------------------- model
def open_model(args):
    """The network behind the page (:func:`basicsr_restore.api.load`: named by ``--arch``, else found from the
    file), restoring through the path of ``infer``."""
    # this module's top imports only the standard library, so that `serve --help` is instant (test_serve holds it)
    from basicsr_restore import api
    from basicsr_restore.commands.args import parse_arch_args
    return api.load(args.weights, args.arch, param_key=args.param_key, trusted=args.trusted, device=args.device,
                    **parse_arch_args(args.arch_args))


# ---------------------------------------------------------------------------------------------- limits
def parse_pixels(text):
    """``--max-pixels``: ``WxH`` (e.g. ``4096x4096``) or a plain count; returns the number of pixels."""
    try:
        if 'x' in text.lower():
            w, h = text.lower().split('x')
            value = int(w) * int(h)
        else:
            value = int(float(text))
    except ValueError:
        raise ValueError(f'--max-pixels {text!r}: give WIDTHxHEIGHT (e.g. 4096x4096) or a number of pixels.') from None
    if value <= 0:
        raise ValueError(f'--max-pixels {text!r} must be positive.')
    return value


# every character that could end a log line or disguise one: C0 (with TAB, LF, CR), DEL, C1 (with NEL), the
# Unicode line and paragraph separators, and the bidirectional overrides/isolates that reorder what a reader sees
_UNLOGGABLE = dict.fromkeys([*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F),
                             *range(0x2066, 0x206A)])


def loggable(value):
    """``value`` as text with no control characters (see ``_UNLOGGABLE``): the one filter of every text that
    reaches the server's log or console, so a request value cannot start a line of its own."""
    return str(value).translate(_UNLOGGABLE)


class Limits:
    def __init__(self, max_upload_mb, max_pixels_text):
        if max_upload_mb <= 0:
            raise ValueError(f'--max-upload-mb {max_upload_mb} must be positive.')
        self.max_bytes = int(max_upload_mb * MB)
        self.max_mb = max_upload_mb
        self.max_pixels = parse_pixels(max_pixels_text)
        self.pixels_text = max_pixels_text

    def check_bytes(self, n):
        if n > self.max_bytes:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                          f'The upload is {n / MB:.1f} MB; this server accepts at most {self.max_mb:g} MB per image '
                          '(restart it with a larger --max-upload-mb).')

    def check_size(self, w, h):
        if w * h > self.max_pixels:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                          f'The image is {w}x{h} ({pixels(w * h)}); this server accepts at most '
                          f'{pixels(self.max_pixels)} (--max-pixels {self.pixels_text}). Use a smaller image, or '
                          'restart the server with a larger --max-pixels (e.g. 8192x8192).')


def pixels(n):
    return f'{n / 1e6:.1f} megapixels' if n >= 100_000 else f'{n} pixels'


def parse_options(query, overlap):
    """``tile`` and ``tta`` of the query string, with clear 400s."""
    params = urllib.parse.parse_qs(query)
    first = {k: v[-1] for k, v in params.items()}
    try:
        tile = int(first.get('tile', '0') or 0)
    except ValueError:
        tile = -1
    if tile < 0 or (tile and tile <= overlap) or tile > 16384:
        raise Refused(HTTPStatus.BAD_REQUEST, f"tile={first.get('tile')!r}: give 0 (whole image) or a tile size "
                                              f'in pixels above the overlap ({overlap}) and at most 16384.')
    tta = first.get('tta', '0').lower()
    if tta not in ('0', '1', 'true', 'false', 'on', 'off', ''):
        raise Refused(HTTPStatus.BAD_REQUEST, f'tta={tta!r}: give 0 or 1.')
    return tile, tta in ('1', 'true', 'on'), loggable(first.get('name', ''))[:200]


# --------------------------------------------------------------------------------------------- serving
class Demo:
    """What the handler needs: the model, the limits, the lock and the page. The lock is held while an upload is
    decoded, restored and encoded: one decoded image is in memory at a time, however many requests wait."""

    def __init__(self, model, limits, overlap=32, speed=None):
        self.model, self.limits, self.overlap = model, limits, overlap
        self.speed = model.pick_speed(speed)  # None/fp32, best (the device's preset: speed.resolve) or a Speed
        self.lock = threading.Lock()
        self.page = render_page(model.config, limits).encode('utf-8')

    def check_header(self, data, label):
        """``(width, height)`` of the upload from its header alone, within ``--max-pixels``; else :class:`Refused`
        (400 empty, not an image or a damaged header; 415 another format; 413 too many pixels)."""
        from basicsr_restore.core.image_header import (  # stdlib-only top, as in open_model
            ACCEPTED_TEXT,
            HeaderError,
            UnsupportedImage,
            image_size,
        )
        if not data:
            raise Refused(HTTPStatus.BAD_REQUEST, 'The upload is empty: choose an image file.')
        try:
            w, h = image_size(data)
        except UnsupportedImage as exc:
            if exc.format is None:
                raise Refused(HTTPStatus.BAD_REQUEST, f'Not an image: {label} cannot be decoded as '
                                                      f'{ACCEPTED_TEXT} (8- or 16-bit).') from None
            raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f'Unsupported format: {label} is {exc}') from None
        except HeaderError as exc:
            raise Refused(HTTPStatus.BAD_REQUEST, f'Not an image: {label} cannot be read: {exc}') from None
        self.limits.check_size(w, h)
        return w, h

    def restore(self, data, tile, tta, name):
        """PNG bytes of the restored upload, and a one-line summary. The header is judged first (no pixel
        decoded); decoding, restoring and encoding hold the lock."""
        import cv2  # stdlib-only top, as in open_model (every import here)
        import torch

        from basicsr_restore.core.image_header import ACCEPTED_TEXT
        from basicsr_restore.core.imageio import ImageError, decode
        label = f"'{name}'" if name else 'the upload'
        w, h = self.check_header(data, label)
        start = time.time()
        with self.lock:
            try:
                img = decode(data, 'upload')
            except ImageError as exc:
                detail = '' if 'not a decodable image' in str(exc) else f' ({exc})'  # that one says LMDB: not here
                raise Refused(HTTPStatus.BAD_REQUEST, f'Not an image: {label} cannot be decoded as '
                                                      f'{ACCEPTED_TEXT} (8- or 16-bit){detail}.') from None
            if img.shape[:2] != (h, w):  # the decoder read another size than the header says: trust neither
                del img
                raise Refused(HTTPStatus.BAD_REQUEST, f'Not an image: {label} says {w}x{h} in its header but '
                                                      'decodes to another size (damaged or crafted file).')
            try:
                out = self.model.restore(img, tile=tile, overlap=self.overlap, tta=tta, speed=self.speed, bgr=True)
            except torch.OutOfMemoryError:
                raise Refused(HTTPStatus.INSUFFICIENT_STORAGE, f'Out of memory restoring {label} ({w}x{h}): pick '
                                                               'a tile size (e.g. 256).') from None
            except (ImageError, RuntimeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise Refused(HTTPStatus.INTERNAL_SERVER_ERROR, f'The network failed on {label} ({w}x{h}): '
                                                                f'{first}') from None
            ok, png = cv2.imencode('.png', out)
            del out  # the images go before the lock does: the next request decodes into freed memory
            if not ok:
                raise Refused(HTTPStatus.INTERNAL_SERVER_ERROR, 'OpenCV could not encode the result as PNG.')
            bits = 16 if img.dtype.itemsize == 2 else 8
            del img
        how = (f'tiles {tile}' if tile else 'whole image') + (', TTA x8' if tta else '')
        return png.tobytes(), f'{w}x{h} {bits}-bit, {how}, {time.time() - start:.2f} s'


def make_handler(demo):
    class Handler(BaseHTTPRequestHandler):
        server_version = 'basicsr-restore'
        timeout = 120  # seconds a client may stall mid-request before its connection is dropped

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            if path in ('/', '/index.html'):
                self._send(HTTPStatus.OK, demo.page, 'text/html; charset=utf-8')
            elif path == '/favicon.ico':
                self._send(HTTPStatus.NO_CONTENT, b'', 'text/plain')
            else:
                self._send(HTTPStatus.NOT_FOUND, b'Not found: the demo page is /.', 'text/plain; charset=utf-8')

        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            try:
                if url.path != '/restore':
                    raise Refused(HTTPStatus.NOT_FOUND, 'Not found: POST images to /restore.')
                tile, tta, name = parse_options(url.query, demo.overlap)
                length = self.headers.get('Content-Length')
                if length is None:
                    raise Refused(HTTPStatus.LENGTH_REQUIRED, 'Send the image with a Content-Length header.')
                try:
                    n = int(length)
                except ValueError:
                    n = -1
                if n < 0:
                    raise Refused(HTTPStatus.BAD_REQUEST, f'Content-Length {length!r} is not a size.')
                try:
                    demo.limits.check_bytes(n)
                except Refused:
                    self._drop_body(n)
                    raise
                data = self.rfile.read(n)
                if len(data) < n:
                    raise Refused(HTTPStatus.BAD_REQUEST, f'The upload ended after {len(data)} of {n} bytes.')
                png, summary = demo.restore(data, tile, tta, name)
            except Refused as exc:
                self._fail(exc.status, str(exc))
                return
            except Exception as exc:  # never let one request take the server down
                self._fail(HTTPStatus.INTERNAL_SERVER_ERROR, f'Unexpected error: {type(exc).__name__}: {exc}')
                return
            self.log_message('restored %s: %s', name or 'upload', summary)
            self._send(HTTPStatus.OK, png, 'image/png', {'X-Restore-Info': summary, 'Cache-Control': 'no-store'})

        def _drop_body(self, n):
            """Read and drop a refused body (up to DRAIN_LIMIT) so that the client reads the answer; a larger one
            is not read at all and its connection is closed."""
            self.close_connection = True
            if n > DRAIN_LIMIT:
                return
            try:
                while n > 0:
                    chunk = self.rfile.read(min(n, MB))
                    if not chunk:
                        return
                    n -= len(chunk)
            except OSError:
                pass

        def _fail(self, status, message):
            self.log_message('refused (%d): %s', int(status), message.replace('\n', ' '))  # loggable: the rest
            try:
                self._send(status, message.encode('utf-8'), 'text/plain; charset=utf-8')
            except OSError:
                pass

        def _send(self, status, body, content_type, headers=None):
            self.send_response(status)
            self.send_header('Content-Type', content_type)
            self.send_header('Content-Length', str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if self.close_connection:
                self.send_header('Connection', 'close')
            self.end_headers()
            if self.command != 'HEAD':
                self.wfile.write(body)

        def log_request(self, code='-', size='-'):
            if self.command == 'POST':  # POSTs log their own line
                return
            super().log_request(code, size)

        def log_message(self, format, *args):  # every line of the handler, http.server's own ones too
            sys.stderr.write(f'{time.strftime("%H:%M:%S")} {loggable(self.client_address[0])} '
                             f'{loggable(format % args)}\n')
            sys.stderr.flush()

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # one line, not a traceback
        exc = sys.exc_info()[1]
        sys.stderr.write(f'{time.strftime("%H:%M:%S")} {loggable(client_address[0])} connection error: '
                         f'{loggable(f"{type(exc).__name__}: {exc}")}\n')


def bind(host, port, handler):
    server_class = _Server
    if ':' in host:  # an IPv6 address
        server_class = type('_Server6', (_Server,), {'address_family': socket.AF_INET6})
    try:
        return server_class((host, port), handler)
    except OSError as exc:
        raise ValueError(f'cannot listen on {host}:{port}: {exc.strerror or exc} (another --port, or another '
                         '--host?)') from None


# ------------------------------------------------------------------------------------------------ page
#: the page's file, package data beside this module (``{{NAME}}``, ``{{CONFIG}}``, ``{{TILES}}`` are filled in)
PAGE_FILE = 'serve_page.html'


def render_page(name, limits):
    page = importlib.resources.files(__package__).joinpath(PAGE_FILE).read_text(encoding='utf-8')
    config = json.dumps({'maxBytes': limits.max_bytes, 'maxMb': limits.max_mb}).replace('<', '\\u003c')
    tiles = '\n'.join(f'<option value="{t}">{"whole image" if t == 0 else f"{t} px"}</option>' for t in TILE_CHOICES)
    return (page.replace('{{NAME}}', html.escape(name)).replace('{{CONFIG}}', config)
            .replace('{{TILES}}', tiles))


# ------------------------------------------------------------------------------------------------- CLI
def add_arguments(p):
    """The ``serve`` options (used by ``basicsr_restore.commands.cli``)."""
    p.add_argument('--weights', required=True, help='checkpoint (BasicSR params/params_ema, official layouts, '
                                                    'bare state dict)')
    p.add_argument('--arch', help='network name (e.g. IRNeXt); default: the one the checkpoint records or its key '
                                  'layout shows')
    p.add_argument('--arch-args', nargs='+', metavar='K=V', default=[],
                   help='constructor arguments: key=value ... or one JSON object (put this option last)')
    p.add_argument('--param-key', help='key that holds the weights (default: detected; EMA preferred)')
    p.add_argument('--trusted', action='store_true',
                   help='the weights file is trusted: allow pickled Python objects (torch.load weights_only=False)')
    p.add_argument('--host', default='127.0.0.1',
                   help='address to listen on (default 127.0.0.1: this machine only). Any other, such as 0.0.0.0, '
                        'exposes the demo -- without authentication -- to the network')
    p.add_argument('--port', type=int, default=8000, help='port (default 8000; 0 picks a free one)')
    p.add_argument('--max-upload-mb', type=float, default=20, help='largest upload in MB (default 20)')
    p.add_argument('--max-pixels', default='4096x4096',
                   help='largest image, as WIDTHxHEIGHT or a pixel count; images with more pixels than that are '
                        'refused (default 4096x4096)')
    p.add_argument('--tile-overlap', type=int, default=32, help='overlap of the tiles when the page picks a tile '
                                                                'size (default 32, as infer)')
    p.add_argument('--device', default='auto', help='cpu, cuda or cuda:N (default: cuda when available)')
    p.add_argument('--speed', choices=('fp32', 'best'), default='fp32',
                   help="fp32 (default) or best: the device's preset speed switches, as infer --speed best")


def run(args):
    limits = Limits(args.max_upload_mb, args.max_pixels)
    if args.tile_overlap < 0:
        raise ValueError('--tile-overlap must be >= 0.')
    model = open_model(args)
    speed = model.pick_speed(getattr(args, 'speed', None),
                             log=lambda m: print(f'note: {loggable(m)}', file=sys.stderr))
    demo = Demo(model, limits, args.tile_overlap, speed)
    server = bind(args.host, args.port, make_handler(demo))
    host, port = server.server_address[:2]
    shown = f'[{host}]' if ':' in host else host
    where = 'this machine only' if host in ('127.0.0.1', '::1', 'localhost') else 'REACHABLE FROM THE NETWORK'
    print(loggable(model.source), flush=True)  # it names the weights file
    print(f'serving http://{shown}:{port}/ ({where}; uploads up to {limits.max_mb:g} MB, images up to '
          f'{loggable(args.max_pixels)}); Ctrl-C stops', flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print('\nbasicsr-restore serve: stopped.', file=sys.stderr)
    finally:
        server.server_close()
    return 0
