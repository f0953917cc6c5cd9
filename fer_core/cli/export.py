"""``python -m fer_core export``: TFLite / ONNX / SavedModel export with a parity check on real faces."""

from __future__ import annotations

import argparse

from fer_core.cli.common import add_data_option, add_model_option
from fer_core.export import FORMATS, MIN_TOP1_AGREEMENT, SAMPLE_DATA, export_model, parity_path


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``export`` sub-command."""
    p = subparsers.add_parser(
        "export", help="export a model to tflite, onnx or savedmodel; checked against Keras on real faces"
    )
    add_model_option(p)
    p.add_argument("--format", required=True, choices=FORMATS, help="tflite, onnx (tf2onnx) or savedmodel (a folder)")
    p.add_argument("--out", required=True, help="the exported file (tflite, onnx) or folder (savedmodel)")
    add_data_option(p, "faces for the parity check (default: the bundled data/sample)")
    p.add_argument(
        "--no-float32-clone",
        dest="float32_clone",
        action="store_false",
        help="refuse instead of exporting a float32 clone when a mixed-precision model does not convert",
    )
    p.set_defaults(func=cmd_export)
    return p


def cmd_export(args) -> int:
    """Export, check parity, print the figures. Returns the exit code."""
    report = export_model(
        args.model, args.format, args.out, data=args.data or SAMPLE_DATA, allow_float32_clone=args.float32_clone
    )
    for a in report["attempts"]:
        if "error" in a:
            print(f"{a['variant']}: refused by the converter or runtime: {a['error']}")
    print(
        f"wrote {report['path']} ({report['format']}, {report['exported_variant']}, {report['size_bytes'] / 1e6:.1f} MB)\n"
        f"parity with {report['reference']} on {report['inputs']} real face views: top-1 agreement {report['top1_agreement']:.2%} "
        f"(needs {MIN_TOP1_AGREEMENT:.0%}), max |dp| {report['max_abs_diff']:.2e}, "
        f"mean |dp| {report['mean_abs_diff']:.2e}\n"
        f"wrote {parity_path(report['path'])} and the model card beside it"
    )
    if report["exported_variant"] != "as trained":
        t = report["vs_keras_as_trained"]
        print(
            f"the parity gate compares with {report['reference']}; against the model as trained "
            f"({report['source_dtype_policy']}) the export agrees on {t['top1_agreement']:.2%} "
            f"(max |dp| {t['max_abs_diff']:.2e}); accuracy on the data: Keras {_pct(report['keras_accuracy'])}, "
            f"export {_pct(report['export_accuracy'])}"
        )
    return 0


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2%}"
