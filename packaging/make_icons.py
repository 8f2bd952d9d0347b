"""Render the application icon (resources/icons/relaywizard.svg) in the sizes each platform needs.

    python packaging/make_icons.py OUT_DIR

writes, from the one SVG and with Qt's own SVG renderer (no other tool needed):

- ``OUT_DIR/hicolor/<N>x<N>/apps/relaywizard.png`` for N in 16 24 32 48 64 128 256 512, and
  ``OUT_DIR/hicolor/scalable/apps/relaywizard.svg``: the freedesktop icon theme layout, ready to copy into
  ``~/.local/share/icons`` or ``/usr/share/icons`` (Linux menus, docks, the AppStream catalog);
- ``OUT_DIR/relaywizard.ico``: Windows, 16 to 256 px (PNG-compressed entries, Windows Vista and later);
- ``OUT_DIR/relaywizard.icns``: macOS, 16 to 1024 px (PNG entries, Mac OS X 10.7 and later).

The PNGs are build products, not sources: the build (packaging/build.py) runs this before PyInstaller.
ICO and ICNS are written here rather than by Qt's image plugins because both are simple containers of
PNGs, and Qt cannot write ICNS on every platform.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "resources" / "icons" / "relaywizard.svg"
NAME = "relaywizard"

#: The freedesktop sizes (hicolor theme): menus 16-48, docks and launchers 64-256, HiDPI and the software
#: centre's catalog up to 512.
LINUX_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
#: Windows: Explorer, taskbar and title bar use 16-48; large icon views 64-256 (the largest an ICO holds).
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
#: macOS: the ICNS type of each PNG entry and its pixel size (Retina "@2x" types reuse the larger renders).
ICNS_TYPES = (
    (b"icp4", 16),
    (b"icp5", 32),
    (b"icp6", 64),
    (b"ic07", 128),
    (b"ic08", 256),
    (b"ic09", 512),
    (b"ic10", 1024),
    (b"ic11", 32),
    (b"ic12", 64),
    (b"ic13", 256),
    (b"ic14", 512),
)


def render_png(svg: Path, size: int) -> bytes:
    """The SVG drawn into a ``size`` x ``size`` transparent PNG (antialiased)."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtGui import QColor, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"make_icons: {svg} is not an SVG that Qt can draw.")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(QColor(0, 0, 0, 0))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    # PySide6 takes the format as str at run time; its stubs say bytes, which the run time refuses
    if not image.save(buffer, "PNG"):  # type: ignore[call-overload]
        raise SystemExit("make_icons: Qt could not encode a PNG.")
    buffer.close()
    return bytes(data.data())


def ico(pngs: dict[int, bytes]) -> bytes:
    """An ICO file of PNG entries: ICONDIR, one ICONDIRENTRY per size, then the PNGs."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = len(header) + 16 * len(sizes)
    entries, images = b"", b""
    for size in sizes:
        png = pngs[size]
        # width/height 0 means 256; no palette; 1 colour plane; 32 bits per pixel
        entries += struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(png), offset)
        images += png
        offset += len(png)
    return header + entries + images


def icns(pngs: dict[int, bytes]) -> bytes:
    """An ICNS file: the 'icns' header and one (type, length, PNG) element per ICNS_TYPES entry."""
    body = b"".join(kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size] for kind, size in ICNS_TYPES)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def make_icons(out: Path, svg: Path = SOURCE) -> list[Path]:
    """Write every icon file into ``out``; returns the files written."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    sizes = sorted(set(LINUX_SIZES) | set(ICO_SIZES) | {size for _kind, size in ICNS_TYPES})
    pngs = {size: render_png(svg, size) for size in sizes}
    written: list[Path] = []
    for size in LINUX_SIZES:
        target = out / "hicolor" / f"{size}x{size}" / "apps" / f"{NAME}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(pngs[size])
        written.append(target)
    scalable = out / "hicolor" / "scalable" / "apps" / f"{NAME}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(svg, scalable)
    written.append(scalable)
    (out / f"{NAME}.ico").write_bytes(ico({size: pngs[size] for size in ICO_SIZES}))
    (out / f"{NAME}.icns").write_bytes(icns(pngs))
    written += [out / f"{NAME}.ico", out / f"{NAME}.icns"]
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python packaging/make_icons.py OUT_DIR", file=sys.stderr)
        return 2
    for path in make_icons(Path(argv[0])):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
