"""The running daemon, split by responsibility (DESIGN.md "Layers"): each part is built
with what it needs by the composition root (:mod:`scheduler.runtime.daemon`)."""
