"""Air-gapped sites: `cas-sync export` writes a bundle of what changed in the mirror since
the previous export, `cas-sync import` checks it and applies it to an offline mirror.

One concern per module, data flowing one way:

- `tree`: what the mirror holds (every file outside hidden folders, with size and mtime),
  which files are metadata, and the snapshots of past exports under
  `<mirror_dir>/.cas-sync/exports/` that tell what changed (pure diffing);
- `manifest`: the bundle's manifest (members with sha256 and size, deletions, volumes,
  state ids that chain the bundles) and the checks that refuse a bad one;
- `volumes`: one tar stream cut into volumes of a chosen size, and read back across
  them, each volume checked against its sha256;
- `signing`: `ssh-keygen -Y sign` / `-Y verify` of the manifest;
- `export`, `importer`: the two runs; `cli`: their subcommands of `cas-sync`.
"""
