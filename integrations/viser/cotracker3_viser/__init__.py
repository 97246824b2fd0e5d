"""cotracker3_viser: the viser web viewer for cotracker3-plugin outputs.

``show(clip, tracks, scene=None, host=..., port=..., block=True)`` serves a viewer;
``load_output(folder)`` reads an output folder; ``cotracker3 view OUTPUT_DIR`` does both.
"""

from cotracker3_viser.loading import LoadedOutput, load_output
from cotracker3_viser.server import ViewerHandle, show
from cotracker3_viser.viewer import TrackViewer, ViewerConfig

__all__ = ["LoadedOutput", "TrackViewer", "ViewerConfig", "ViewerHandle", "load_output", "show"]
