"""Taking models to a device: offline bundles (:mod:`.bundle`), the wheels they carry
(:mod:`.wheelhouse`) for a target (:mod:`.targets`), and golden outputs that ``verify`` holds
the device to (:mod:`.golden`, :mod:`.verify`).

Example::

    >>> from edgelstm.runtimes.device import BundleOptions, build_bundle
    >>> options = BundleOptions(target="linux-aarch64")
    >>> build_bundle(["deploy.json"], "pi-bundle", options)  # doctest: +SKIP

or from the shell::

    edgelstm bundle deploy.json --target linux-aarch64 --out pi-bundle.tar.gz
    edgelstm verify pi-bundle            # on the device, after ./install.sh
"""

from __future__ import annotations

from edgelstm.runtimes.device.bundle import BundleOptions, BundleResult, build_bundle
from edgelstm.runtimes.device.golden import record_golden, tolerance_for
from edgelstm.runtimes.device.verify import VerifyReport, verify_bundle_or_model
from edgelstm.runtimes.device.wheelhouse import PackageIndex

__all__ = [
    "BundleOptions",
    "BundleResult",
    "PackageIndex",
    "VerifyReport",
    "build_bundle",
    "record_golden",
    "tolerance_for",
    "verify_bundle_or_model",
]
