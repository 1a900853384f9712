#!/bin/sh
# Install this edgelstm bundle with no network: a virtual environment, edgelstm and every
# dependency from wheelhouse/ (no package index is contacted), then `edgelstm verify` on the
# bundle, which exits non-zero when this device does not reproduce the bundle's outputs.
#
#   ./install.sh                                   # into .venv beside this script, with python3
#   PYTHON=python@PYTHON@ VENV=/opt/edgelstm/.venv ./install.sh
#
# Built by edgelstm @VERSION@ for @MACHINE@ with CPython @PYTHON@. PYTHON may be any command
# that runs that Python (edgelstm's CI points it at a QEMU launcher to check a bundle on an
# x86 machine; the environment's interpreter links to it, so everything runs emulated).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python3}
VENV=${VENV:-$here/.venv}

fail() {
  echo "error: $*" >&2
  exit 2
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  fail "$PYTHON not found; install Python @PYTHON@, or set PYTHON=/path/to/python@PYTHON@"
fi
found=$("$PYTHON" -c 'import platform, sys; print(platform.machine(), "%d.%d" % sys.version_info[:2])') \
  || fail "cannot run $PYTHON"
machine=${found% *}
version=${found#* }
[ "$machine" = "@MACHINE@" ] \
  || fail "this bundle is for @MACHINE@, but $PYTHON runs on $machine; build one for it with: edgelstm bundle ... --target linux-$machine"
[ "$version" = "@PYTHON@" ] \
  || fail "this bundle's wheels are for Python @PYTHON@, but $PYTHON is $version; set PYTHON=python@PYTHON@, or build the bundle with --python $version"

if [ ! -f "$VENV/pyvenv.cfg" ]; then
  "$PYTHON" -m venv "$VENV" \
    || fail "could not create a virtual environment at $VENV; on Debian, Ubuntu and Raspberry Pi OS it needs the python3-venv package (apt install python3-venv)"
fi
"$VENV/bin/python" -m pip install --no-index --find-links "$here/wheelhouse" \
  --disable-pip-version-check --no-warn-script-location @REQUIREMENTS@
"$VENV/bin/edgelstm" verify "$here"
echo "installed: $VENV/bin/edgelstm (activate it with: . $VENV/bin/activate)"
