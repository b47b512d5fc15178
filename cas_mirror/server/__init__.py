"""cas-server: serves the mirror tree (conda channels and the PyPI mirror) over HTTP.

`negotiate` chooses the PEP 691 representation of a simple-API page, `files` maps requests
to files of the tree and builds responses, `app` is the RSGI application granian runs in
each worker, and `cli` is the `cas-server` command.
"""
