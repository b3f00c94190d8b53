"""The analytics layer: correlation-graph snapshots (graph-builder) and the temporal GNN (gnn-trainer).

Plain functions over numpy/torch; the Dagster assets in ``streamforge_pipelines.assets`` are thin
wrappers. :mod:`.snapshot` is the one data shape both halves share.
"""
