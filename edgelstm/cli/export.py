"""``edgelstm export`` and ``edgelstm quantize``: from a checkpoint to a validated ONNX file,
and from that to an audited INT8/FP16 one (:mod:`edgelstm.exporters`)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgelstm.cli.app import above_zero
from edgelstm.errors import InvalidInputError

RunDirArgument = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Argument(help="Checkpoint folder written by `edgelstm train`.", show_default=False),
]
ExportOutOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(help="The .onnx file to write (single file, with edgelstm metadata)."),
]
StreamingOption = Annotated[
    bool,
    typer.Option(
        help="Export the streaming variant: one state per recurrent layer in (layer0_h, "
        "layer0_c, ...), the same names with _out back."
    ),
]
OpsetOption = Annotated[int, typer.Option(min=14, help="ONNX opset.")]
AtolOption = Annotated[
    float,
    typer.Option(
        callback=above_zero,
        help="Max abs difference from PyTorch allowed in validation; must be > 0.",
    ),
]
UserModelOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        help="A module edgelstm did not train: file.py:factory or package.module:factory."
    ),
]
WeightsOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(help="With --model: .safetensors or .pt state dict."),
]
InputShapeOption = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        metavar="SHAPE",
        help="With --model: example input shape, once per forward() input, any rank "
        "(B,T,F or 1,1,64,256).",
        show_default=False,
    ),
]
ExampleOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        help="With --model, instead of --input-shape: .npz of real inputs keyed by forward() "
        "argument names (or arr_0, arr_1, ... in order).",
        show_default=False,
    ),
]
DynamicAxesOption = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        metavar="NAME=AXES",
        help="With --model: axes that vary, once per input: x=0,3 or x=0:batch,3:time "
        "\\[default: batch,time of one B,T,F input, else batch].",
        show_default=False,
    ),
]
ValidateShapesOption = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        metavar="CHECK",
        help="With --model: one validation check, batch=1,time=8 or a whole shape; "
        "repeat it \\[default: from the dynamic axes].",
        show_default=False,
    ),
]


class ExporterChoice(str, Enum):
    auto = "auto"
    torchscript = "torchscript"
    dynamo = "dynamo"


ExporterOption = Annotated[
    ExporterChoice,
    typer.Option(help="auto: TorchScript, then torch.export (dynamo) if it fails."),
]
#: ``--overwrite`` of the commands that write one file (``export``, ``quantize``).
OverwriteFileOption = Annotated[bool, typer.Option(help="Replace an existing --out file.")]
ExportJsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result and validation as JSON on stdout.")
]


def export(
    run_dir: RunDirArgument = None,
    out: ExportOutOption = None,
    streaming: StreamingOption = False,
    opset: OpsetOption = 17,
    atol: AtolOption = 1e-4,
    model: UserModelOption = None,
    weights: WeightsOption = None,
    input_shape: InputShapeOption = None,
    example: ExampleOption = None,
    dynamic_axes: DynamicAxesOption = None,
    validate_shapes: ValidateShapesOption = None,
    exporter: ExporterOption = ExporterChoice.auto,
    overwrite: OverwriteFileOption = False,
    json_output: ExportJsonOption = False,
) -> None:
    """Export to ONNX, validated against PyTorch at several shapes before anything is written."""
    from edgelstm.cli.app import print_notes
    from edgelstm.cli.console import stderr_console, stdout_console

    if out is None:
        raise InvalidInputError("--out MODEL.onnx is required")
    if model is not None:
        if run_dir is not None:
            raise InvalidInputError("give either RUN_DIR or --model, not both")
        if weights is None or (not input_shape and example is None):
            raise InvalidInputError(
                "--model needs --weights W and --input-shape B,T,F (once per input) or "
                "--example inputs.npz"
            )
        from edgelstm.exporters.user_models import export_user_model

        result = export_user_model(
            model,
            weights,
            input_shape,
            out,
            streaming=streaming,
            opset=opset,
            atol=atol,
            overwrite=overwrite,
            example=example,
            dynamic_axes=dynamic_axes or (),
            validate_shapes=validate_shapes or (),
            exporter=exporter.value,
        )
    else:
        if run_dir is None:
            raise InvalidInputError("give a checkpoint folder RUN_DIR or --model file.py:factory")
        given = (weights, input_shape, example, dynamic_axes, validate_shapes)
        if any(value is not None for value in given):
            raise InvalidInputError(
                "--weights, --input-shape, --example, --dynamic-axes and --validate-shapes "
                "apply only to --model"
            )
        from edgelstm.exporters.onnx import export as export_model

        result = export_model(
            run_dir,
            out,
            streaming=streaming,
            opset=opset,
            atol=atol,
            overwrite=overwrite,
            exporter=exporter.value,
        )
    print_notes(stderr_console(), result.notes)
    if json_output:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    from edgelstm.exporters.validation import print_validation

    console = stdout_console()
    print_validation(result.report, console)
    console.print(result.describe(), highlight=False)


class QuantModeChoice(str, Enum):
    dynamic_int8 = "dynamic-int8"
    static_int8 = "static-int8"
    fp16 = "fp16"


class CalibrationChoice(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


class ReduceRangeChoice(str, Enum):
    on = "on"
    off = "off"
    auto = "auto"


ModelArgument = Annotated[Path, typer.Argument(help="FP32 model written by `edgelstm export`.")]
ModeOption = Annotated[QuantModeChoice, typer.Option(help="Precision to produce.")]
QuantizedOutOption = Annotated[
    Optional[Path], typer.Option(help="The quantized .onnx to write.")  # noqa: UP045
]
CalibrationOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(help="static-int8: .npz with X \\[n, time, features] of model inputs."),
]
CalibrationMethodOption = Annotated[
    CalibrationChoice, typer.Option(help="static-int8 calibration method.")
]
GateRunOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--eval",
        help="Checkpoint folder whose test split gates accuracy \\[default: the model's source].",
    ),
]
MaxDegradationOption = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        min=0.0,
        help="Allowed loss: accuracy 0.01, forecast MAE 0.02 relative, AUROC 0.01 by default.",
    ),
]
AllowPartialOption = Annotated[
    bool, typer.Option(help="Keep a dynamic-int8 result even if an LSTM stayed float.")
]
PerChannelOption = Annotated[
    bool, typer.Option(help="INT8: one scale per output channel (more accurate, ~1% larger).")
]
ReduceRangeOption = Annotated[
    ReduceRangeChoice,
    typer.Option(
        help="INT8: 7-bit weights for the CPU that will run the model. on: safe on any "
        "x86 (without VNNI 8-bit weights can saturate); off: 8-bit, for targets with VNNI "
        "or ARM; auto: decide from the CPU running quantize (only if it is the target).",
    ),
]
EvalInputsOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        help="Real inputs for the fidelity check: .npz keyed by the model's input names "
        "(samples on axis 0), or X for one sequence input \\[default: the checkpoint's test "
        "split, else synthetic inputs, which prove little].",
        show_default=False,
    ),
]
OpsOption = Annotated[
    str,
    typer.Option(
        help="dynamic-int8: op types to quantize. auto: time candidates on this CPU and keep "
        "the fastest that stays faithful to FP32; all; or a list such as LSTM,MatMul.",
    ),
]
MaxDisagreementOption = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Fidelity: share of decisions (argmax, or probability > 0.5) that may change.",
    ),
]
MaxRelativeErrorOption = Annotated[
    float,
    typer.Option(min=0.0, help="Fidelity: ||int8 - fp32|| / ||fp32|| allowed on other outputs."),
]
QuantizeJsonOption = Annotated[
    bool, typer.Option("--json", help="Print the audit and gate as JSON on stdout.")
]


def quantize(
    model: ModelArgument,
    mode: ModeOption,
    out: QuantizedOutOption = None,
    calibration: CalibrationOption = None,
    calibration_method: CalibrationMethodOption = CalibrationChoice.minmax,
    eval_run: GateRunOption = None,
    max_degradation: MaxDegradationOption = None,
    allow_partial: AllowPartialOption = False,
    per_channel: PerChannelOption = True,
    reduce_range: ReduceRangeOption = ReduceRangeChoice.on,
    eval_inputs: EvalInputsOption = None,
    ops: OpsOption = "auto",
    max_disagreement: MaxDisagreementOption = 0.02,
    max_relative_error: MaxRelativeErrorOption = 0.25,
    overwrite: OverwriteFileOption = False,
    json_output: QuantizeJsonOption = False,
) -> None:
    """Quantize to INT8 or FP16: op types chosen by measurement, checked against FP32 and
    gated on accuracy; writes only on success."""
    if out is None:
        raise InvalidInputError("--out OUT.onnx is required")
    from edgelstm.exporters.fidelity import FidelityThresholds
    from edgelstm.exporters.quantize import quantize as quantize_model
    from edgelstm.exporters.quantize_report import print_quantize_result, quantize_result_json

    result = quantize_model(
        model,
        out,
        mode=mode.value,
        calibration=calibration,
        calibration_method=calibration_method.value,
        eval_run=eval_run,
        max_degradation=max_degradation,
        allow_partial=allow_partial,
        per_channel=per_channel,
        reduce_range=reduce_range.value,
        overwrite=overwrite,
        eval_inputs=eval_inputs,
        ops=ops,
        fidelity=FidelityThresholds(max_disagreement, max_relative_error),
    )
    if json_output:
        typer.echo(json.dumps(quantize_result_json(result), indent=2))
    else:
        from edgelstm.cli.console import stdout_console

        print_quantize_result(result, stdout_console())
