"""Vision commands: `aiforge predict` (detections of a trained detector on an image) and
`aiforge export-onnx` (the YOLO-style detector as ONNX). Nothing heavy at module level."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from aiforge.core.errors import InputError


def register_commands(app: typer.Typer) -> None:
    @app.command()
    def predict(
        recipe: Annotated[str, typer.Argument(help="vision.detect-yolo, vision.detect-frcnn or vision.segment-maskrcnn.")],
        run: Annotated[Path, typer.Option("--run", help="Run folder of a trained detector.")],
        image: Annotated[Path, typer.Option("--image", help="Image file (PNG, JPEG, ...).")],
        out: Annotated[Path | None, typer.Option("--out", help="Where to write the annotated image (PNG).")] = None,
        min_score: Annotated[float, typer.Option(min=0.0, max=1.0, help="Report detections scoring at least this.")] = 0.3,
    ) -> None:
        """Detect objects in one image: prints JSON detections (label, score, box in pixels)
        and writes the annotated image to --out."""
        from aiforge.vision.predict import predict_image

        try:
            result = predict_image(recipe, run, image, out, min_score)
        except InputError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        typer.echo(json.dumps(result, indent=2))

    @app.command("export-onnx")
    def export_onnx(
        run: Annotated[Path, typer.Option("--run", help="Run folder of a trained vision.detect-yolo.")],
        out: Annotated[Path, typer.Option("--out", help="ONNX file to write.")],
    ) -> None:
        """Export the trained YOLO-style detector (network + box decoding) to ONNX."""
        from aiforge.vision.onnx_export import export_yolo_onnx

        try:
            path = export_yolo_onnx(run, out)
        except InputError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"wrote {path}")
