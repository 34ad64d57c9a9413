"""``tinyset deal train`` and ``tinyset deal predict``; torch is imported inside the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tinyset_builder.errors import TinysetError

app = typer.Typer(name="deal", no_args_is_help=True, add_completion=False,
                  help="DEAL, the point-prompted small-object detector: train and predict.")


def parse_points(text: str) -> list[tuple[float, float]]:
    """Parse ``"x,y;x,y"`` into a list of points; a one-line error for anything else."""
    points = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        xy = part.split(",")
        try:
            if len(xy) != 2:
                raise ValueError
            points.append((float(xy[0]), float(xy[1])))
        except ValueError:
            raise TinysetError(f"--points: {part!r} is not 'x,y' "
                               f"(expected \"x,y[;x,y]\")") from None
    if not points:
        raise TinysetError("--points: empty prompt list; give at least one point \"x,y\"")
    return points


def _config(preset: str, ablation: str | None):
    from deal.config import get_config

    return get_config(preset, ablation)


@app.command("train")
def train_cmd(
    out: Annotated[Path, typer.Option(help="Work folder: last.pt, log.jsonl, train.json.")],
    data: Annotated[Path | None, typer.Option(help="Built dataset (uses annotations/train.json)."
                                              )] = None,
    train_json: Annotated[Path | None, typer.Option(help="COCO file to train on.")] = None,
    images: Annotated[Path | None, typer.Option(help="Folder the file_names are relative to."
                                                )] = None,
    preset: Annotated[str, typer.Option(help="tiny (CPU) or paper (Swin-T).")] = "tiny",
    ablation: Annotated[str | None, typer.Option(
        help="Table IV(d) row: none, pe, pe+hfe, pe+hfe+dgqa, no-prompt.")] = None,
    steps: Annotated[int | None, typer.Option(help="Total optimisation steps.")] = None,
    minutes: Annotated[float | None, typer.Option(help="Training-time budget.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    resume: Annotated[bool, typer.Option(help="Resume from OUT/last.pt if present.")] = True,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 2,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
) -> None:
    """Train DEAL with PG-CPP (resumable; progress on stderr)."""
    if data is not None:
        train_json = train_json or data / "annotations" / "train.json"
        images = images or data
    if train_json is None or images is None:
        raise TinysetError("deal train: give --data, or --train-json and --images")
    if not train_json.is_file():
        raise TinysetError(f"{train_json}: training annotations not found")
    import torch

    from deal.train import train

    torch.set_num_threads(threads)
    res = train(_config(preset, ablation), train_json, images, out, steps=steps,
                minutes=minutes, seed=seed, resume=resume, device=device)
    typer.echo(f"trained {res.steps} steps ({res.seconds:.0f} s) -> {res.checkpoint}")


@app.command("predict")
def predict_cmd(
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint written by 'deal train'.")],
    out: Annotated[Path, typer.Option(help="Output folder (detections.json, overlay.png).")],
    image: Annotated[Path | None, typer.Option(help="One image to prompt.")] = None,
    points: Annotated[str | None, typer.Option(help="Prompt points \"x,y[;x,y]\" in pixels."
                                               )] = None,
    category_id: Annotated[int, typer.Option(help="Category id given to the detections.")] = 1,
    image_id: Annotated[int, typer.Option(help="Image id written in the detections.")] = 1,
    prompts: Annotated[Path | None, typer.Option(help="P2SOD prompt file (batch mode).")] = None,
    gt: Annotated[Path | None, typer.Option(help="COCO file naming the prompt file's images."
                                            )] = None,
    images: Annotated[Path | None, typer.Option(help="Image folder of --gt.")] = None,
    preset: Annotated[str | None, typer.Option(help="Expected preset (checked).")] = None,
    min_score: Annotated[float, typer.Option(help="Drop detections below this score.")] = 0.0,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 2,
) -> None:
    """Detect every instance of the prompted category: one image + points, or a prompt file."""
    if (image is None) == (prompts is None):
        raise TinysetError("deal predict: give either --image with --points, or --prompts with "
                           "--gt")
    pts = None
    if image is not None:
        if points is None:
            raise TinysetError("deal predict: --image needs --points \"x,y[;x,y]\"")
        pts = parse_points(points)
        if not image.is_file():
            raise TinysetError(f"{image}: image not found")
    elif gt is None:
        raise TinysetError("deal predict: --prompts needs --gt (and --images)")
    import torch

    from deal.predictor import DealPredictor, predict_prompt_file
    from tinyset_builder.imageio import read_image
    from tinyset_builder.io import read_json, write_json

    torch.set_num_threads(threads)
    cfg = _config(preset, None) if preset is not None else None
    predictor = DealPredictor.from_checkpoint(checkpoint, cfg)
    predictor.min_score = min_score
    out.mkdir(parents=True, exist_ok=True)
    if image is not None:
        assert pts is not None
        pixels = read_image(image)
        predictor.set_image(pixels)
        pred = (predictor.predict(pts) if predictor.model.prompted
                else predictor.predict_unprompted())
        dets = [{"image_id": image_id, "category_id": category_id,
                 "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                 "score": round(s, 5)}
                for (x0, y0, x1, y1), s in zip(pred.xyxy.tolist(), pred.scores.tolist(),
                                               strict=True)]
        write_json(out / "detections.json", dets)
        draw_overlay(pixels, pts, pred.xyxy, pred.scores, out / "overlay.png")
        typer.echo(f"{len(dets)} detections ({pred.num_queries} queries) -> {out}")
        return
    from deal.data import resolve_image
    from tinyset_builder.coco import CocoDataset

    assert gt is not None and prompts is not None
    ds = CocoDataset.load(gt)
    root = images or gt.parent.parent
    files = {i.id: resolve_image(root, i.file_name, i.split) for i in ds.images}
    doc = read_json(prompts)
    if not isinstance(doc, dict) or "prompts" not in doc:
        raise TinysetError(f"{prompts}: not a P2SOD prompt file (no 'prompts' list)")
    dets = predict_prompt_file(predictor, files, doc["prompts"])
    write_json(out / "detections.json", dets)
    typer.echo(f"{len(dets)} detections for {len(doc['prompts'])} prompt sets -> {out}")


def draw_overlay(pixels, points, xyxy, scores, path: Path, min_score: float = 0.3,
                 ) -> Path:
    """Save ``pixels`` with prompt points (red) and detections above ``min_score`` (orange)."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(pixels)
    draw = ImageDraw.Draw(im)
    for (x0, y0, x1, y1), s in zip(xyxy.tolist(), scores.tolist(), strict=True):
        if s >= min_score:
            draw.rectangle([x0, y0, x1, y1], outline=(255, 140, 0), width=1)
    for x, y in points:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(255, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def register(root: typer.Typer) -> None:
    """Add ``tinyset deal ...`` to the root app."""
    root.add_typer(app, name="deal")
