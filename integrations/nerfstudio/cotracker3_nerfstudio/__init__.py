"""cotracker3_nerfstudio: ns-process-data-style dataset writer with a CoTracker3 track step."""
