"""cotracker3_viser: the viser web viewer for cotracker3-plugin outputs."""
