# Replaces PyInstaller's hook for PySide6.QtNetwork: relaywizard uses QtNetwork only for QLocalServer /
# QLocalSocket (one tray per user), never for network traffic (that is asyncio's, with Python's ssl), so
# Qt's TLS backends, its copy of OpenSSL and the network-information plugins stay out.
# ruff: noqa
import os

from PyInstaller.utils.hooks.qt import add_qt6_dependencies

hiddenimports, binaries, datas = add_qt6_dependencies(__file__)
binaries = [
    (source, destination)
    for source, destination in binaries
    if os.path.basename(os.path.normpath(destination)) not in ("tls", "networkinformation")
]
