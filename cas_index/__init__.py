"""cas_index: the conda channel format. Reading packages, building and publishing
repodata, indexing channel folders (`cas-index`). Never imports cas_mirror, which builds
on it."""
