"""The Qt desktop interface: wizard, progress view, tray. The only package that imports Qt."""
