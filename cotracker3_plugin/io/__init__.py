"""Video and image-folder I/O (PyAV), and overlay rendering."""

from cotracker3_plugin.io.clip import Clip

__all__ = ["Clip"]
