"""cas-installer: a spec YAML in, a self-contained `NAME-VERSION-PLATFORM.sh` out, which
installs a conda environment on a machine with only sh, tar and coreutils (no network, no
conda, no Python).

Modules, in the order data flows: spec (read and check the YAML), solve (rattler's solver
per platform; fetch the packages through the shared downloader, verified), contents
(extract the packages, their placeholders and modes; noarch: python relocation and entry
points), prefix (where each placeholder is, as byte offsets), payload (the tar of the
unpacked environment + conda-meta records + the lists the header reads), script (the
POSIX sh that checks, unpacks, patches and renames into place), header (filling it in),
build (one installer per platform, written atomically), cli (the `cas-installer` command).
"""
