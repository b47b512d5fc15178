"""The POSIX shell code of an installer's header (filled in by `header.render`).

The header runs on the target with only sh, tar and coreutils (tail, head, dd,
sha256sum, mktemp, cp, mv, rm, mkdir, chmod, dirname, basename, date, cat, wc): no Python,
conda, sed, awk, gzip or network (on macOS `shasum` stands in for sha256sum, and dd without
GNU's byte offsets makes it use tail | head). The payload is the last PAYLOAD_SIZE bytes of the file
(`tail -c`), so the header never needs to know its own length; `exit` before the payload
keeps sh from reading it. What the header does, in order (nothing is written before step
4, and the prefix appears only at step 7, whole):

1. options `-b -u -p PREFIX -h`; 2. the payload's sha256 (a corrupt or truncated file
installs nothing); 3. the license, shown and accepted (unless -b); 4. the prefix: asked for
(unless -b or -p), made absolute, refused if longer than the binary placeholders allow,
refused if it exists without -u; 5. unpack into a fresh folder beside it (with -u: a copy
of the prefix first, from which the packages being replaced are removed: their conda-meta
record and the files it lists); 6. rewrite the placeholders (`control/prefix-files`,
offsets computed on the build machine); 7. rename into place (with -u: the old prefix is
set aside, the new one renamed in, the old one deleted; a run killed between those two
renames is repaired by the next run, which renames the old one back first);
8. byte-compile noarch: python files with the environment's own python when it runs
(optional: python compiles on import otherwise).
"""

TEMPLATE = r"""#!/bin/sh
# @NAME@ @VERSION@ for @PLATFORM@: a self-contained conda environment installer made by
# cas-installer. Needs only sh, tar and coreutils. Run: sh THIS_FILE -h
set -u
LC_ALL=C
export LC_ALL
umask 022

NAME=@Q_NAME@
VERSION=@Q_VERSION@
PLATFORM=@Q_PLATFORM@
DEFAULT_PREFIX=@Q_DEFAULT_PREFIX@
PACKAGE_NAMES=@Q_PACKAGES@
MAX_BINARY_PREFIX=@MAX_BINARY_PREFIX@
HAS_LICENSE=@HAS_LICENSE@
PAYLOAD_SIZE=@PAYLOAD_SIZE@
PAYLOAD_SHA256=@PAYLOAD_SHA256@
SELF=$0

usage() {
    cat <<'CAS_USAGE_END'
usage: sh @FILE@ [-b] [-u] [-p PREFIX] [-h]

Installs @NAME@ @VERSION@ (@PLATFORM@) as a conda environment, with no network.

  -b         batch mode: no questions (the license is accepted, the prefix is -p or the
             default)
  -p PREFIX  install into PREFIX (default: @DEFAULT_PREFIX@)
  -u         update an existing prefix: its packages that this installer also holds are
             replaced, the others are kept
  -h         show this help

Exit status: 0 installed; 1 refused (license not accepted, corrupt installer file);
2 usage error or unusable prefix; 3 failed while unpacking (nothing was installed).
CAS_USAGE_END
}

die() {
    status=$1
    shift
    printf '%s: error: %s\n' "$NAME installer" "$*" >&2
    exit "$status"
}

BATCH=0
UPDATE=0
PREFIX=
while getopts bup:h opt; do
    case $opt in
        b) BATCH=1 ;;
        u) UPDATE=1 ;;
        p) PREFIX=$OPTARG ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || die 2 "unexpected argument: $1 (see -h)"

# 2. the payload checksum, before anything is written
[ -f "$SELF" ] || die 2 "run this installer as a file: sh path/to/installer.sh"
if command -v sha256sum >/dev/null 2>&1; then
    SHA256SUM=sha256sum
elif command -v shasum >/dev/null 2>&1; then
    SHA256SUM="shasum -a 256"  # macOS has no coreutils
else
    die 2 "neither sha256sum (coreutils) nor shasum found; cannot check this installer"
fi
actual=$(tail -c "$PAYLOAD_SIZE" "$SELF" | $SHA256SUM) || die 1 "cannot read $SELF"
actual=${actual%% *}
have=$(wc -c < "$SELF")
if [ "$have" -lt "$PAYLOAD_SIZE" ] || [ "$actual" != "$PAYLOAD_SHA256" ]; then
    die 1 "$SELF is corrupt or truncated (payload sha256 $actual," \
        "expected $PAYLOAD_SHA256); nothing installed"
fi

# 3. the license
if [ "$HAS_LICENSE" = 1 ] && [ "$BATCH" = 0 ]; then
    printf '\nPlease read the license of %s %s:\n\n' "$NAME" "$VERSION"
    show_license
    printf '\nDo you accept the license terms? [yes|no] '
    answer=
    read -r answer || answer=
    case $answer in
        [yY]|[yY][eE][sS]) ;;
        *) die 1 "the license was not accepted; nothing installed" ;;
    esac
fi

# 4. the prefix
if [ -z "$PREFIX" ]; then
    PREFIX=$DEFAULT_PREFIX
    if [ "$BATCH" = 0 ]; then
        printf '\n%s will be installed into: %s\n' "$NAME" "$DEFAULT_PREFIX"
        printf 'Press ENTER to confirm, or type another location: '
        answer=
        read -r answer || die 1 "no answer; nothing installed"
        [ -z "$answer" ] || PREFIX=$answer
    fi
fi
case $PREFIX in
    '~') PREFIX=$HOME ;;
    '~/'*) PREFIX=$HOME/${PREFIX#??} ;;
esac
case $PREFIX in
    /*) ;;
    *) PREFIX=$(pwd)/$PREFIX ;;
esac
while [ "${PREFIX%/}" != "$PREFIX" ] && [ "$PREFIX" != / ]; do PREFIX=${PREFIX%/}; done
case $PREFIX in
    /) die 2 "refusing to install into /" ;;
    *'
'*) die 2 "a prefix may not hold a newline" ;;
esac
BASE=$(basename "$PREFIX")
case $BASE in
    .|..) die 2 "the prefix must end with a folder name, not $BASE" ;;
esac
PARENT=$(dirname "$PREFIX")
if [ -d "$PARENT" ]; then
    PARENT=$(cd "$PARENT" && pwd -P) || die 2 "cannot use $PARENT"
    PREFIX=${PARENT%/}/$BASE  # without ./ or ../ and symlinks: the path files will name
fi
check_length() {
    if [ -n "$MAX_BINARY_PREFIX" ] && [ "${#PREFIX}" -gt "$MAX_BINARY_PREFIX" ]; then
        die 2 "prefix $PREFIX is too long (${#PREFIX} bytes): binary files of this" \
            "installer hold at most $MAX_BINARY_PREFIX; choose a shorter one; nothing installed"
    fi
}
check_length
if [ ! -d "$PARENT" ]; then
    mkdir -p "$PARENT" 2>/dev/null || die 2 "cannot create $PARENT"
    PARENT=$(cd "$PARENT" && pwd -P) || die 2 "cannot use $PARENT"
    PREFIX=${PARENT%/}/$BASE
    check_length
fi
OLD=${PARENT%/}/.$BASE.cas-installer-old
if [ ! -e "$PREFIX" ] && [ -d "$OLD" ]; then
    printf 'restoring %s from %s (left by an interrupted update)\n' "$PREFIX" "$OLD" >&2
    mv "$OLD" "$PREFIX" || die 2 "cannot restore $PREFIX from $OLD"
fi
if [ -e "$PREFIX" ] || [ -L "$PREFIX" ]; then
    [ "$UPDATE" = 1 ] || die 2 "$PREFIX already exists; use -u to update it," \
        "or choose another prefix with -p"
    [ -d "$PREFIX" ] || die 2 "$PREFIX exists and is not a folder"
    [ -d "$PREFIX/conda-meta" ] \
        || die 2 "$PREFIX is not a conda environment (no conda-meta/); refusing to update it"
fi
[ -w "$PARENT" ] || die 2 "cannot write in $PARENT (permission denied)"

# 5. unpack into a folder beside the prefix
WORK=$(mktemp -d "${PARENT%/}/.$BASE.cas-installer-XXXXXX") \
    || die 2 "cannot create a folder in $PARENT"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'cleanup; trap - EXIT; exit 130' INT
trap 'cleanup; trap - EXIT; exit 143' TERM HUP
fail() { die 3 "$*; nothing installed"; }

mkdir "$WORK/prefix" || fail "cannot create $WORK/prefix"
if [ -d "$PREFIX" ]; then
    printf 'copying %s to update it\n' "$PREFIX"
    cp -pPR "$PREFIX/." "$WORK/prefix/" || fail "cannot copy $PREFIX"
    remove_replaced "$WORK/prefix"
fi
printf 'unpacking %s %s into %s\n' "$NAME" "$VERSION" "$PREFIX"
tail -c "$PAYLOAD_SIZE" "$SELF" | (cd "$WORK" && tar -xof -) || fail "cannot unpack the payload"

# 6. the placeholders
patch_prefix "$WORK/prefix" "$WORK/control/prefix-files" \
    || fail "cannot rewrite the prefix placeholders"
mkdir -p "$WORK/prefix/conda-meta" || fail "cannot create conda-meta"
{
    printf '==> %s <==\n' "$(date '+%Y-%m-%d %H:%M:%S')"
    cat "$WORK/control/history"
} >> "$WORK/prefix/conda-meta/history" || fail "cannot write conda-meta/history"

# 7. into place
if [ -d "$PREFIX" ]; then
    mv "$PREFIX" "$OLD" || fail "cannot move $PREFIX aside"
    if ! mv "$WORK/prefix" "$PREFIX"; then
        mv "$OLD" "$PREFIX"
        fail "cannot rename the new environment into $PREFIX"
    fi
    rm -rf "$OLD"
else
    [ ! -e "$PREFIX" ] || fail "$PREFIX appeared while installing"
    mv "$WORK/prefix" "$PREFIX" || fail "cannot rename the new environment into $PREFIX"
fi

# 8. byte-compile noarch: python packages with the environment's own python (optional)
if [ -s "$WORK/control/noarch-python" ] && [ -x "$PREFIX/bin/python" ]; then
    (cd "$PREFIX" && ./bin/python -m compileall -q -i - \
        < "$WORK/control/noarch-python" >/dev/null 2>&1) \
        || printf '%s\n' "note: could not byte-compile the noarch python files;" \
            "python compiles them on import" >&2
fi
printf 'installed %s %s into %s\n' "$NAME" "$VERSION" "$PREFIX"
exit 0
"""

# The functions, placed ahead of the main body of TEMPLATE (sh defines them in order).
FUNCTIONS = r"""
show_license() {
    cat <<'@LICENSE_END@'
@LICENSE@
@LICENSE_END@
}

# range FILE START [LENGTH]: the bytes of FILE from offset START (LENGTH of them, or all):
# one GNU dd where it takes byte offsets (coreutils), else tail | head (POSIX)
range() {
    if [ $# -eq 3 ] && [ "$3" -le 0 ]; then
        return 0
    fi
    if [ "$BYTE_DD" = 1 ]; then
        if [ $# -eq 3 ]; then
            dd if="$1" iflag=skip_bytes,count_bytes skip="$2" count="$3" bs=65536 2>/dev/null
        else
            dd if="$1" iflag=skip_bytes skip="$2" bs=65536 2>/dev/null
        fi
    elif [ $# -eq 3 ]; then
        tail -c +$(($2 + 1)) "$1" | head -c "$3"
    else
        tail -c +$(($2 + 1)) "$1"
    fi
}

# nuls COUNT: COUNT NUL bytes, from sh's own printf (no process per string)
nuls() {
    n=$1
    while [ "$n" -ge 8 ]; do
        printf '\000\000\000\000\000\000\000\000'
        n=$((n - 8))
    done
    while [ "$n" -gt 0 ]; do
        printf '\000'
        n=$((n - 1))
    done
}

# rewrite FILE MODE PLACEHOLDER_LENGTH WHERE: FILE as it must be for PREFIX, in one pass.
# t: WHERE is the offsets of the placeholder, each replaced by PREFIX. b: WHERE is the
# NUL-terminated strings holding it (A+A...:END), each rewritten with PREFIX and padded
# with NULs to its length, so the file keeps its length.
rewrite() {
    file=$1
    mode=$2
    plen=$3
    last=0
    oldifs=$IFS
    IFS=,
    set -- $4
    IFS=$oldifs
    for item in "$@"; do
        if [ "$mode" = t ]; then
            range "$file" "$last" $((item - last)) || return 1
            printf '%s' "$PREFIX"
            last=$((item + plen))
        else
            rewrite_string "${item%:*}" "${item#*:}" || return 1
            last=${item#*:}
        fi
    done
    range "$file" "$last"
}

# rewrite_string A+A... END: (for rewrite) bytes from $last to END with PREFIX at each A
rewrite_string() {
    oldifs=$IFS
    IFS=+
    set -- $1 "$2"
    IFS=$oldifs
    count=0
    while [ $# -gt 1 ]; do
        range "$file" "$last" $(($1 - last)) || return 1
        printf '%s' "$PREFIX"
        last=$(($1 + plen))
        count=$((count + 1))
        shift
    done
    range "$file" "$last" $(($1 - last)) || return 1
    nuls $((count * (plen - ${#PREFIX})))
}

# patch_prefix ROOT LIST: rewrite each file of LIST (lines of prefix.PrefixPatch) for PREFIX
patch_prefix() {
    root=$1
    new=$root/.cas-installer-patch
    BYTE_DD=0
    if dd if=/dev/null of=/dev/null iflag=skip_bytes,count_bytes count=0 2>/dev/null; then
        BYTE_DD=1
    fi
    while read -r mode plen where path; do
        target=$root/$path
        [ -f "$target" ] && [ ! -L "$target" ] || continue
        locked=0
        if [ ! -w "$target" ]; then
            chmod u+w "$target" || return 1
            locked=1
        fi
        rewrite "$target" "$mode" "$plen" "$where" > "$new" || return 1
        cat "$new" > "$target" || return 1  # in place: the file keeps its inode and mode
        [ "$locked" = 0 ] || chmod u-w "$target" || return 1
    done < "$2"
    rm -f "$new"
}

# remove_replaced ROOT: for -u, drop from ROOT each package this installer also holds:
# its conda-meta record and the files the record lists (records as conda and rattler
# write them: one path per line).
remove_replaced() {
    for record in "$1"/conda-meta/*.json; do
        [ -f "$record" ] || continue
        dist=${record##*/}
        dist=${dist%.json}
        rest=${dist%-*}
        pname=${rest%-*}
        case " $PACKAGE_NAMES " in
            *" $pname "*) ;;
            *) continue ;;
        esac
        inside=0
        while IFS= read -r line; do
            if [ "$inside" = 0 ]; then
                case $line in
                    *'"files": []'*) ;;
                    *'"files": ['*) inside=1 ;;
                esac
                continue
            fi
            case $line in
                *'"'*) ;;
                *) break ;;
            esac
            item=${line#*\"}
            item=${item%\"*}
            case $item in
                *\\*|..|../*|*/../*|*/..|/*) continue ;;
            esac
            rm -f "$1/$item"
        done < "$record"
        rm -f "$record"
    done
}
"""
