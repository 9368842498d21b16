"""The width and height of an encoded image, read from its header without decoding a pixel.

``basicsr-restore serve`` judges an upload's size from these few bytes before it decodes anything: a 12000x12000
TIFF can be a few hundred kB on the wire and 432 MB once decoded. Written from the formats' specifications:

* **PNG**: the signature, then the IHDR chunk (width, height: 4-byte big-endian).
* **JPEG**: the markers after SOI (APPn, DQT, DHT, COM, ... skipped by their lengths) up to the first SOFn frame
  header (height, width: 2-byte big-endian); SOS or EOI before any SOFn is a damaged file.
* **TIFF**: both byte orders (``II``/``MM``), classic (42) and BigTIFF (43); the first IFD's ImageWidth (256) and
  ImageLength (257) as SHORT, LONG or LONG8. That IFD's SamplesPerPixel above 4 or BitsPerSample above 16 is
  refused too: the server restores 8- and 16-bit images of 1 to 4 channels only.
* **WebP**: RIFF/WEBP with a ``VP8 `` (lossy key frame), ``VP8L`` (lossless) or ``VP8X`` (extended: canvas) chunk.
* **BMP**: BITMAPCOREHEADER (12 bytes: 16-bit sizes) or BITMAPINFOHEADER and its successors (signed 32-bit; a
  negative height is a top-down image).

Anything else is refused with :class:`UnsupportedImage` (formats OpenCV would decode too, such as GIF, PNM, EXR,
HDR or JPEG 2000, are named), and a known format whose header is cut short or inconsistent with :class:`HeaderError`:
one line each, never another exception.
"""
import re
import struct

#: the formats :func:`image_size` reads, as the server's messages name them
ACCEPTED = ('PNG', 'JPEG', 'TIFF', 'WebP', 'BMP')
ACCEPTED_TEXT = 'PNG, JPEG, TIFF, WebP or BMP'

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class HeaderError(ValueError):
    """A header that cannot be read: cut short, or with impossible values. The message is one line."""


class UnsupportedImage(HeaderError):
    """Bytes of a format (or content) that is not read here; ``format`` names it, or is None when unknown."""

    def __init__(self, message, format=None):
        super().__init__(message)
        self.format = format


def image_size(data):
    """``(width, height)`` of the image encoded in ``data`` (bytes-like; only its header is read).

    Raises :class:`UnsupportedImage` for another format or bytes that are no image, :class:`HeaderError` for a
    header of a known format that is truncated or damaged."""
    if not isinstance(data, bytes):
        data = bytes(data)  # bytearray, memoryview, a numpy buffer: indexing then gives ints, as bytes does
    kind = image_format(data)
    if kind not in ACCEPTED:
        raise UnsupportedImage(unsupported_message(kind), kind)
    try:
        width, height = _READERS[kind](data)
    except (struct.error, IndexError):
        raise HeaderError(f'the {kind} header is truncated ({len(data)} bytes).') from None
    if width <= 0 or height <= 0:
        raise HeaderError(f'the {kind} header gives an empty image ({width}x{height}).')
    return width, height


def unsupported_message(kind):
    what = f"{'an' if kind[0] in 'AEIOU' else 'a'} {kind} image" if kind else 'not an image this server can read'
    return f'{what}; accepted are {ACCEPTED_TEXT} (8- or 16-bit).'


# ------------------------------------------------------------------------------------------- recognising
_OTHER_SIGNATURES = (  # formats that are not read here, named in the refusal (several of them OpenCV decodes)
    (b'GIF87a', 'GIF'), (b'GIF89a', 'GIF'),
    (b'\x76\x2f\x31\x01', 'OpenEXR'),
    (b'#?RADIANCE', 'Radiance HDR'), (b'#?RGBE', 'Radiance HDR'),
    (b'\x00\x00\x00\x0cjP  \r\n\x87\n', 'JPEG 2000'), (b'\xff\x4f\xff\x51', 'JPEG 2000'),
    (b'\x00\x00\x00\x0cJXL \r\n\x87\n', 'JPEG XL'), (b'\xff\x0a', 'JPEG XL'),
    (b'\x59\xa6\x6a\x95', 'Sun raster'),
    (b'8BPS', 'Photoshop'),
    (b'\x00\x00\x01\x00', 'ICO'),
    (b'qoif', 'QOI'),
    (b'%PDF', 'PDF'),
)


def image_format(data):
    """The name of the format ``data`` starts with: one of :data:`ACCEPTED`, another format's name, or None."""
    head = bytes(data[:32])
    if head.startswith(PNG_SIGNATURE):
        return 'PNG'
    if head.startswith(b'\xff\xd8'):
        return 'JPEG'
    if head[:4] in (b'II*\x00', b'MM\x00*', b'II+\x00', b'MM\x00+'):
        return 'TIFF'
    if head[:4] == b'RIFF' and head[8:12] == b'WEBP':
        return 'WebP'
    if head[:2] == b'BM':
        return 'BMP'
    for signature, name in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return name
    if head[4:8] == b'ftyp':
        brand = head[8:12]
        return 'AVIF' if brand in (b'avif', b'avis') else 'HEIF' if brand in (b'heic', b'heix', b'mif1') else None
    if len(head) >= 3 and head[:1] == b'P' and head[2:3] in b' \t\r\n':
        if head[1:2] in b'1234567':
            return 'PNM (PBM/PGM/PPM/PAM)'
        if head[1:2] in b'Ff':
            return 'PFM'
    return None


# ----------------------------------------------------------------------------------------------- readers
def _png(data):
    if data[12:16] != b'IHDR':
        if len(data) < 16:
            raise IndexError
        raise HeaderError('the PNG does not start with its IHDR chunk (damaged file).')
    if len(data) < 24:
        raise IndexError
    width, height = struct.unpack('>II', data[16:24])
    if width > 0x7FFFFFFF or height > 0x7FFFFFFF:
        raise HeaderError(f'the PNG header gives an impossible size ({width}x{height}).')
    return width, height


_JPEG_NO_LENGTH = {0x01, 0xD8} | set(range(0xD0, 0xD8))  # TEM, SOI, RST0-7: markers without a segment
_JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0-15 less DHT, JPG (reserved) and DAC
_JPEG_MAX_SEGMENTS = 4096  # before the frame header; real files have a few (APPn, DQT, DHT; ICC in <= 255 parts)
_FILL = re.compile(b'\xff+')


def _jpeg(data):
    i = 2
    for _ in range(_JPEG_MAX_SEGMENTS):
        if i + 2 > len(data):
            raise IndexError
        if data[i] != 0xFF:
            raise HeaderError(f'the JPEG has no marker at byte {i} before its frame header (damaged file).')
        i = _FILL.match(data, i).end() - 1  # fill bytes (0xFF) may pad a marker: skipped at C speed
        if i + 2 > len(data):
            raise IndexError
        marker = data[i + 1]
        if marker in _JPEG_NO_LENGTH:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI, SOS
            raise HeaderError('the JPEG has no frame header (SOFn) before its image data (damaged file).')
        if i + 4 > len(data):
            raise IndexError
        length = struct.unpack('>H', data[i + 2:i + 4])[0]
        if length < 2:
            raise HeaderError(f'the JPEG segment at byte {i} has an impossible length {length} (damaged file).')
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                raise IndexError
            height, width = struct.unpack('>HH', data[i + 5:i + 9])
            if height == 0:
                raise HeaderError('the JPEG gives its height later (DNL marker), which is not supported.')
            return width, height
        i += 2 + length
    raise HeaderError(f'the JPEG has more than {_JPEG_MAX_SEGMENTS} segments before its frame header (damaged '
                      'file).')


_TIFF_TYPES = {3: ('H', 2), 4: ('I', 4), 16: ('Q', 8)}  # SHORT, LONG, LONG8 (BigTIFF)
_WIDTH, _LENGTH, _BITS, _SAMPLES = 256, 257, 258, 277


def _tiff(data):
    order = '<' if data[:2] == b'II' else '>'
    big = struct.unpack(order + 'H', data[2:4])[0] == 43
    if big:
        offset_size, zero = struct.unpack(order + 'HH', data[4:8])
        if offset_size != 8 or zero != 0:
            raise HeaderError(f'the BigTIFF header gives offsets of {offset_size} bytes (damaged file).')
        ifd = struct.unpack(order + 'Q', data[8:16])[0]
        count_format, entry_size, value_size = 'Q', 20, 8  # entries in the IFD; values in an entry: 'Q' too
    else:
        ifd = struct.unpack(order + 'I', data[4:8])[0]
        count_format, entry_size, value_size = 'H', 12, 4  # entries: 'H'; values in an entry: 'I'
    count_size = struct.calcsize(count_format)
    if ifd < 8 or ifd + count_size > len(data):
        if ifd < 8:
            raise HeaderError(f'the TIFF header points its first directory at byte {ifd} (damaged file).')
        raise IndexError
    entries = struct.unpack(order + count_format, data[ifd:ifd + count_size])[0]
    if entries > 0xFFFF:  # a classic TIFF's most; libtiff refuses far fewer in a BigTIFF
        raise HeaderError(f'the first TIFF directory claims {entries} entries (damaged file).')
    if ifd + count_size + entries * entry_size > len(data):
        raise IndexError
    tags = {}
    for k in range(entries):
        at = ifd + count_size + k * entry_size
        tag, kind = struct.unpack(order + 'HH', data[at:at + 4])
        if tag in (_WIDTH, _LENGTH, _BITS, _SAMPLES):
            tags[tag] = _tiff_values(data, order, at + 4, kind, value_size, tag)
    missing = [name for tag, name in ((_WIDTH, 'ImageWidth'), (_LENGTH, 'ImageLength')) if tag not in tags]
    if missing:
        raise HeaderError(f'the first TIFF directory has no {" or ".join(missing)} (damaged file).')
    samples = tags.get(_SAMPLES, [1])[0]
    bits = max(tags.get(_BITS, [1]) or [1])
    if samples > 4:
        raise UnsupportedImage(f'a TIFF image of {samples} channels; accepted are 1 to 4 (gray, color, alpha).',
                               'TIFF')
    if bits > 16:
        raise UnsupportedImage(f'a TIFF image of {bits}-bit samples; accepted are 8- or 16-bit images.', 'TIFF')
    return tags[_WIDTH][0], tags[_LENGTH][0]


def _tiff_values(data, order, at, kind, value_size, tag):
    """The values (at most 16) of the IFD entry whose type field ends at ``at``: inline or at their offset. The
    entry's count and value/offset fields are 4 bytes each in TIFF, 8 in BigTIFF (``value_size``)."""
    if kind not in _TIFF_TYPES:
        raise HeaderError(f'the TIFF tag {tag} has type {kind}, not SHORT or LONG (damaged file).')
    code, size = _TIFF_TYPES[kind]
    word = 'Q' if value_size == 8 else 'I'
    total = struct.unpack(order + word, data[at:at + value_size])[0]
    if total < 1:
        raise HeaderError(f'the TIFF tag {tag} holds no value (damaged file).')
    count = min(total, 16)
    where = at + value_size
    if total * size > value_size:  # the values lie elsewhere; the field holds their offset
        where = struct.unpack(order + word, data[where:where + value_size])[0]
    values = data[where:where + count * size]
    if len(values) < count * size:
        raise IndexError
    return list(struct.unpack(order + code * count, values))


def _webp(data):
    chunk = data[12:16]
    if len(data) < 30:
        raise IndexError
    if chunk == b'VP8 ':
        if data[20] & 1:
            raise HeaderError('the WebP (VP8) starts with an inter frame, not a key frame (damaged file).')
        if data[23:26] != b'\x9d\x01\x2a':
            raise HeaderError('the WebP (VP8) frame has no start code (damaged file).')
        width, height = struct.unpack('<HH', data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b'VP8L':
        if data[20] != 0x2F:
            raise HeaderError('the WebP (VP8L) bitstream has no signature byte (damaged file).')
        bits = struct.unpack('<I', data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b'VP8X':
        width = int.from_bytes(data[24:27], 'little') + 1
        height = int.from_bytes(data[27:30], 'little') + 1
        return width, height
    raise HeaderError(f'the WebP starts with a {chunk!r} chunk, not VP8, VP8L or VP8X (damaged file).')


def _bmp(data):
    size = struct.unpack('<I', data[14:18])[0]
    if size == 12:  # BITMAPCOREHEADER (OS/2 1.x): unsigned 16-bit sizes
        return struct.unpack('<HH', data[18:22])
    if size < 16:
        raise HeaderError(f'the BMP has an unknown header of {size} bytes (damaged file).')
    width, height = struct.unpack('<ii', data[18:26])  # BITMAPINFOHEADER and later, OS/2 2.x
    if width < 0:
        raise HeaderError(f'the BMP header gives a negative width ({width}).')
    return width, abs(height)  # a negative height: rows stored top-down


_READERS = {'PNG': _png, 'JPEG': _jpeg, 'TIFF': _tiff, 'WebP': _webp, 'BMP': _bmp}
