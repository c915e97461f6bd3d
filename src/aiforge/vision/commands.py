"""Vision commands: `aiforge predict` (detections of a trained detector on an image) and
`aiforge export` (a trained detector as ONNX). Nothing heavy at module level."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aiforge.core.errors import InputError


def register_commands(app: typer.Typer) -> None:
    @app.command()
    def export(
        recipe: Annotated[str, typer.Argument(help="Recipe of the trained model: vision.detect-yolo.")],
        run: Annotated[Path, typer.Option("--run", help="Run folder (or its model/ folder).")],
        out: Annotated[Path | None, typer.Option("--out", help="File to write; default RUN/model.onnx.")] = None,
        format_: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    ) -> None:
        """Export a trained model (the YOLO-style detector: network + box decoding) to ONNX,
        for ONNX Runtime; NMS stays outside the graph."""
        from aiforge.vision.onnx_export import export_model

        try:
            path = export_model(recipe, run, out, format_)
        except InputError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"wrote {path}")

    @app.command("export-onnx", hidden=True)
    def export_onnx(
        run: Annotated[Path, typer.Option("--run", help="Run folder of a trained vision.detect-yolo.")],
        out: Annotated[Path | None, typer.Option("--out", help="ONNX file to write; default RUN/model.onnx.")] = None,
    ) -> None:
        """Old name of `aiforge export vision.detect-yolo` (kept as an alias)."""
        export("vision.detect-yolo", run, out, "onnx")
