"""Writes the seed corpus for the `decode` target into corpus/decode/.

Tiny generated images (no shared test data): every format and colour layout
decode() handles. Needs Pillow and numpy.
"""
import io
import pathlib

import numpy as np
from PIL import Image

out = pathlib.Path(__file__).parent / "corpus" / "decode"
out.mkdir(parents=True, exist_ok=True)
img = Image.fromarray(np.random.default_rng(2).integers(0, 255, (12, 17, 3)).astype(np.uint8))


def save(name, im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    (out / name).write_bytes(buf.getvalue())


exif = Image.Exif()
exif[0x0112] = 6
save("base.jpg", img, "JPEG", quality=75)
save("prog420.jpg", img, "JPEG", quality=60, progressive=True, subsampling=2)
save("grey.jpg", img.convert("L"), "JPEG")
save("cmyk.jpg", img.convert("CMYK"), "JPEG")
save("exif6.jpg", img, "JPEG", exif=exif.tobytes())
save("rgba.png", img.convert("RGBA"), "PNG")
save("p.png", img.convert("P"), "PNG")
save("la.png", img.convert("LA"), "PNG")
save("i16.png", img.convert("I;16"), "PNG")
save("lossy.webp", img, "WEBP", quality=50)
save("lossless.webp", img, "WEBP", lossless=True)
save("rgba.webp", img.convert("RGBA"), "WEBP", lossless=True)
save("g.pgm", img.convert("L"), "PPM")
save("c.ppm", img, "PPM")
