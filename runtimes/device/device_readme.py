"""The README a bundle carries: what the person at the device reads, with no network and
no edgelstm documentation at hand."""

from __future__ import annotations

from collections.abc import Sequence

from edgelstm.runtimes.device.targets import DeviceRuntime, DeviceTarget

__all__ = ["device_readme"]

_EXEC_START = (
    "/opt/edgelstm/.venv/bin/edgelstm serve /opt/edgelstm/models/{model} --host 0.0.0.0 "
    "--port 8443 --token-file /etc/edgelstm/tokens --ssl-certfile /etc/edgelstm/cert.pem "
    "--ssl-keyfile /etc/edgelstm/key.pem"
)


def _run_lines(
    configs: Sequence[tuple[str, str]], models: Sequence[tuple[str, str, str | None]]
) -> str:
    lines = []
    for name, mode in configs:
        if mode == "streaming":
            lines.append(f".venv/bin/edgelstm run --config {name} --stream --input frames.csv "
                         "--output rows.csv")  # fmt: skip
        else:
            lines.append(f".venv/bin/edgelstm run --config {name} --input data.npz "
                         "--output predictions.csv")  # fmt: skip
    if not configs:
        for name, _, variant in models:
            stream = " --stream" if variant == "streaming" else ""
            lines.append(f".venv/bin/edgelstm run models/{name}{stream} --input data.npz "
                         "--output predictions.csv")  # fmt: skip
    return "\n".join(lines)


def _serve_section(extras: Sequence[str], models: Sequence[tuple[str, str, str | None]]) -> str:
    streaming = [name for name, _, variant in models if variant == "streaming"]
    if "serve" not in extras or not streaming:
        return ""
    return f"""
## Serve streams

```
.venv/bin/edgelstm serve models/{streaming[0]} --host 0.0.0.0 --port 8443 \\
  --token-file /etc/edgelstm/tokens --ssl-certfile cert.pem --ssl-keyfile key.pem
```

As a service (`/etc/systemd/system/edgelstm-serve.service`, then `systemctl enable --now
edgelstm-serve`); `systemctl reload` swaps in a new model file without dropping streams:

```ini
[Unit]
Description=edgelstm streaming inference server
After=network-online.target

[Service]
User=edgelstm
ExecStart={_EXEC_START.format(model=streaming[0])}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure

[Install]
WantedBy=multi-user.target
```
"""


def device_readme(
    target: DeviceTarget,
    runtime: DeviceRuntime,
    extras: Sequence[str],
    models: Sequence[tuple[str, str, str | None]],
    configs: Sequence[tuple[str, str]],
) -> str:
    """The bundle's README.md. ``models``: (file, precision, variant); ``configs``: (file,
    mode)."""
    model_rows = "\n".join(
        f"| `models/{name}` | {precision} | {variant or 'sequence'} | "
        f"`golden/{name.removesuffix('.onnx')}.golden.npz` |"
        for name, precision, variant in models
    )
    return f"""# edgelstm bundle

For **{target.describe()}**, with `{runtime.distribution}` ({", ".join(runtime.providers)}).
Everything installs from this folder: the device needs Python {target.python} with its
`venv` module and no network.

| model | precision | kind | golden file |
|---|---|---|---|
{model_rows}

## Install

Copy this folder (or the `.tar.gz`, then `tar xzf` it) to the device, then:

```
cd BUNDLE
./install.sh
```

It creates `.venv` here (`VENV=/opt/edgelstm/.venv ./install.sh` to put it elsewhere),
installs from `wheelhouse/` only, and ends with `edgelstm verify`. If it stops:

- *this bundle is for ...*: the bundle was built for another CPU or Python; build one with
  `edgelstm bundle ... --target linux-$(uname -m) --python X.Y` (`python3 --version`).
- *could not create a virtual environment*: install the `python3-venv` package.

## Verify

```
.venv/bin/edgelstm verify .
```

checks every file against `manifest.json`, then runs each model's golden inputs and
compares the outputs with the ones recorded when the bundle was built. It prints a table
and one verdict line, and exits 1 on a mismatch. Tolerances: FP32, and INT8 with 7-bit
weights (edgelstm's default) run on one thread as recorded, agree to `1e-5 + 1e-5*|value|`;
other INT8 may differ by one quantization step of each output (its range / 255), since the
thread count and, with 8-bit weights, the CPU (x86 without VNNI saturates) change the
rounding; FP16 to `1e-3 + 1e-3*|value|`; other providers than the CPU get `1e-3` more.

## Run

```
{_run_lines(configs, models)}
```
{_serve_section(extras, models)}"""
