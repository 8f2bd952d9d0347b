# Replaces PyInstaller's hook for PySide6.QtGui (a hook in the spec's hookspath wins): the same Qt
# libraries and plugins, minus the plugins no relaywizard window uses. Filtering here, before PyInstaller
# follows each plugin's shared-library dependencies, also leaves those dependencies out (the GTK 3 theme
# plugin alone would bring the build machine's GTK 3, cairo, pango and ATK, ~20 MB, and a GTK that does
# not match the user's themes and modules).
# ruff: noqa
import os

from PyInstaller.utils.hooks.qt import add_qt6_dependencies

hiddenimports, binaries, datas = add_qt6_dependencies(__file__)

UNWANTED = {
    # embedded and kiosk platforms (no desktop session): the desktop ones stay (xcb, wayland, windows,
    # cocoa) and offscreen, which the tests and headless screenshots use
    "platforms": ("qeglfs", "qlinuxfb", "qminimalegl", "qvnc", "qvkkhrdisplay"),
    "egldeviceintegrations": ("",),
    "generic": ("",),  # evdev / TUIO input for those embedded platforms
    "platformthemes": ("qgtk3",),  # the XDG desktop portal theme stays: native file dialogs, dark mode
    # image formats relaywizard never reads (SVG, PNG (built in), ICO, ICNS, GIF, JPEG stay)
    "imageformats": ("qpdf", "qtiff", "qwebp", "qtga", "qwbmp"),
    # Wayland: the xdg-shell (every desktop compositor) and wl-shell stay; shm and EGL buffers stay
    "wayland-shell-integration": ("fullscreen-shell", "ivi-shell", "qt-shell"),
    "wayland-graphics-integration-client": ("dmabuf-server", "drm-egl-server", "shm-emulation-server",
                                            "vulkan-server"),
}


def wanted(source, destination):
    kind = os.path.basename(os.path.normpath(destination))
    name = os.path.basename(source)
    return not any(part in name for part in UNWANTED.get(kind, ()))


binaries = [(source, destination) for source, destination in binaries if wanted(source, destination)]
