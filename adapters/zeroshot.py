"""Zero-shot adapter: SAM3 and Rex-Omni from local weights, predict only (no training).

Option ``model``: ``sam3`` (SAM License) or ``rex-omni`` (IDEA License 1.0 + Qwen research
licence). Option ``prompt``:

* ``text`` (Table I rows 38–39): every image is prompted with the category names of its own
  source (``"visdrone/car"`` -> ``"car"``); detections carry the prompted category id;
* ``box`` (Table II one-box rows, setting ``p2sod-1``): every prompt set of the job's P2SOD
  prompt file is answered from one exemplar box — the box of the prompted instance
  (``ann_ids[0]`` in the evaluated split), which *is* the input of a one-box visual prompt.

Option ``backend``: ``transformers`` (default: ``Sam3Model`` / Qwen2.5-VL in
adapters/zeroshot_sam3.py and adapters/zeroshot_rex.py) or ``package`` (the authors' ``sam3`` /
``rex_omni`` packages, adapters/zeroshot_packages.py; ``vllm`` for Rex-Omni's package).

Weights are never downloaded. transformers backend: a ``save_pretrained`` folder named by option
``model_path`` or env ``TINYSET_SAM3_PATH`` / ``TINYSET_REX_OMNI_PATH``, else the Hugging Face
cache entry of ``facebook/sam3`` / ``IDEA-Research/Rex-Omni`` read with ``local_files_only``
(option ``cache_dir`` overrides the cache folder). ``unavailable`` names the download command.
Other options: ``threshold`` (SAM3 score threshold, 0.05 so AP sees the low-score tail),
``batch_size`` (SAM3 prompts per forward, 8; Rex-Omni requests per ``generate``, 4),
``dtype`` (``auto``: bfloat16 on CUDA, float32 on CPU), ``max_new_tokens`` (Rex-Omni, 4096
as the authors).

Scores: SAM3 gives one per box. Rex-Omni is a language model and gives none; its boxes get
descending scores in output order (1, 1 − 1/n, ...), stated in the notes.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from adapters.base import Detections, Job
from baselines.data import image_path
from tinyset_builder._imports import is_available
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import read_json, write_json

MODELS: dict[str, dict[str, str]] = {
    "sam3": {"repo": "facebook/sam3", "env": "TINYSET_SAM3_PATH",
             "how": "accept the SAM License at https://huggingface.co/facebook/sam3, "
                    "`hf auth login`, then `hf download facebook/sam3`"},
    "rex-omni": {"repo": "IDEA-Research/Rex-Omni", "env": "TINYSET_REX_OMNI_PATH",
                 "how": "`hf download IDEA-Research/Rex-Omni`"},
}
PROMPTS = ("text", "box")
BACKENDS = {"sam3": ("transformers", "package"), "rex-omni": ("transformers", "package", "vllm")}
MIN_TRANSFORMERS = (5, 0)
SKIPS_FILE = "rex_omni_skipped.json"

Part = tuple[np.ndarray, np.ndarray, int]


# ---------------------------------------------------------------------------------------------
# small pure helpers

def order_scores(n: int) -> np.ndarray:
    """Descending pseudo-confidences for ``n`` boxes given without scores: 1, 1 − 1/n, ..."""
    return (1.0 - np.arange(n, dtype=np.float32) / max(n, 1)).astype(np.float32)


def merge(image_id: int, parts: Sequence[Part]) -> Detections:
    """One :class:`Detections` from ``(xyxy, scores, category_id)`` parts, sorted by score."""
    parts = [p for p in parts if len(p[1])]
    if not parts:
        return Detections.empty(image_id)
    xyxy = np.concatenate([p[0] for p in parts]).astype(np.float32)
    scores = np.concatenate([p[1] for p in parts]).astype(np.float32)
    labels = np.concatenate([np.full(len(p[1]), p[2], np.int64) for p in parts])
    order = np.argsort(-scores, kind="stable")
    return Detections(image_id, xyxy[order], scores[order], labels[order])


def phrase(category_name: str) -> str:
    """The text prompt of a TinySet category: ``"visdrone/car"`` -> ``"car"``.

    Underscores become spaces and commas are dropped (Rex-Omni joins phrases with ``", "``).
    """
    name = category_name.rsplit("/", 1)[-1].replace("_", " ").replace(",", " ")
    return " ".join(name.split())


def xywh_to_xyxy(box: Sequence[float]) -> list[float]:
    """A COCO ``[x, y, w, h]`` box as ``[x0, y0, x1, y1]``."""
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


def cached_snapshot(repo: str, cache_dir: str | None = None) -> Path | None:
    """The Hugging Face cache folder of ``repo`` if it holds a config and weights, else None.

    Read-only (``try_to_load_from_cache``): nothing is downloaded, as with ``HF_HUB_OFFLINE=1``.
    """
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo, "config.json", cache_dir=cache_dir)
    if not isinstance(hit, str):
        return None
    folder = Path(hit).parent
    return folder if has_weights(folder) else None


def has_weights(folder: Path) -> bool:
    """A ``save_pretrained`` folder: ``config.json`` and safetensors/bin weights."""
    return (folder / "config.json").is_file() and any(
        any(folder.glob(pattern)) for pattern in ("*.safetensors", "*.bin"))


def torch_dtype(name: str, device: str) -> Any:
    """``auto``: bfloat16 on CUDA (the authors run both models in bf16 there), float32 on CPU;
    else the named torch dtype (``float32``, ``bfloat16``, ``float16``)."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if name not in ("float32", "bfloat16", "float16"):
        raise TinysetError(f"dtype must be auto, float32, bfloat16 or float16, not {name!r}")
    return getattr(torch, name)


def device_of(job: Job) -> str:
    """``job.device``; ``auto`` (or empty) -> ``cuda`` when available, else ``cpu``."""
    if job.device not in ("", "auto"):
        return job.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------------------------
# the adapter

class ZeroShotAdapter:
    """SAM3 / Rex-Omni, predict only (see the module docstring)."""

    @staticmethod
    def _opt(job: Job, key: str, default: Any = None) -> Any:
        return job.extra.get(key, job.options.get(key, default))

    def _model(self, job: Job) -> str:
        model = str(self._opt(job, "model", ""))
        if model not in MODELS:
            raise TinysetError(f"zeroshot adapter: unknown model {model!r} "
                               f"({', '.join(MODELS)})")
        return model

    def _backend(self, job: Job, model: str) -> str:
        backend = str(self._opt(job, "backend", "transformers"))
        if backend not in BACKENDS[model]:
            raise TinysetError(f"{model}: backend must be one of {', '.join(BACKENDS[model])}, "
                               f"not {backend!r}")
        return backend

    def weights(self, job: Job, model: str) -> tuple[Path | None, str]:
        """``(folder, where it came from)`` of the transformers weights, or ``(None, why)``."""
        spec = MODELS[model]
        named = self._opt(job, "model_path") or os.environ.get(spec["env"])
        if named:
            folder = Path(str(named)).expanduser()
            if not folder.exists():
                return None, f"weights folder {folder} not found"
            if not has_weights(folder):
                return None, (f"{folder} is not a save_pretrained folder (config.json and "
                              f"*.safetensors expected)")
            source = "option model_path" if self._opt(job, "model_path") else spec["env"]
            return folder, source
        cache_dir = self._opt(job, "cache_dir")
        folder = cached_snapshot(spec["repo"], str(cache_dir) if cache_dir else None)
        if folder is not None:
            return folder, f"Hugging Face cache ({spec['repo']})"
        return None, (f"local weights (none found: option model_path and {spec['env']} unset, "
                      f"no {spec['repo']} in the Hugging Face cache; download once: "
                      f"{spec['how']}, or `hf download {spec['repo']} --local-dir DIR` and "
                      f"set {spec['env']}=DIR; nothing is downloaded at run time)")

    def unavailable(self, job: Job) -> str | None:
        """What is missing (framework, weights, prompt file) and how to get it, or None."""
        try:
            model = self._model(job)
            backend = self._backend(job, model)
        except TinysetError as e:
            return str(e)
        prompt = self._opt(job, "prompt", "text")
        if prompt not in PROMPTS:
            return f"{model}: prompt must be text or box, not {prompt!r}"
        missing = (self._package_missing(job, model) if backend != "transformers"
                   else self._transformers_missing(job, model))
        if prompt == "box" and job.prompts_json is None:
            missing.append("a P2SOD prompt file (box prompts run on the p2sod-1 setting)")
        return f"{model} needs " + "; ".join(missing) if missing else None

    def _transformers_missing(self, job: Job, model: str) -> list[str]:
        missing = [f"{m} (pip install 'tinyset[zeroshot]')" for m in ("torch", "transformers")
                   if not is_available(m)]
        if missing:
            return missing
        version = metadata.version("transformers")
        if tuple(int(p) for p in version.split(".")[:2] if p.isdigit()) < MIN_TRANSFORMERS:
            return [f"transformers >= 5.0 for Sam3Model (this is {version}; "
                    f"pip install 'tinyset[zeroshot]')"]
        folder, why = self.weights(job, model)
        return [] if folder is not None else [why]

    def _package_missing(self, job: Job, model: str) -> list[str]:
        from adapters.zeroshot_packages import PACKAGES

        spec, missing = PACKAGES[model], []
        if sys.version_info < spec["min_python"]:
            need = ".".join(map(str, spec["min_python"]))
            missing.append(f"Python >= {need} for package {spec['package']} (this is "
                           f"{sys.version_info.major}.{sys.version_info.minor}: run from a "
                           f"Python {need} environment with {spec['install']})")
        elif not is_available(spec["package"]):
            missing.append(f"package {spec['package']} ({spec['install']})")
        path = self._package_weights(job, model)
        if path is None:
            option, env = self._package_weights_names(model)
            missing.append(f"weights: {spec['weights']}, then pass option {option} or set {env}")
        elif not path.exists():
            missing.append(f"weights {path} not found ({spec['weights']})")
        return missing

    @staticmethod
    def _package_weights_names(model: str) -> tuple[str, str]:
        return (("checkpoint", "TINYSET_SAM3_CHECKPOINT") if model == "sam3"
                else ("model_path", "TINYSET_REX_OMNI_PATH"))

    def _package_weights(self, job: Job, model: str) -> Path | None:
        option, env = self._package_weights_names(model)
        w = self._opt(job, option) or os.environ.get(env)
        return Path(str(w)).expanduser() if w else None

    def train(self, job: Job) -> dict[str, Any]:
        """Nothing to train: return what will be used."""
        model = self._model(job)
        backend = self._backend(job, model)
        notes: dict[str, Any] = {"training": "none (zero-shot)", "model": model,
                                 "prompt": self._opt(job, "prompt", "text"), "backend": backend}
        if backend == "transformers":
            folder, source = self.weights(job, model)
            notes.update(weights=str(folder), weights_from=source,
                         transformers=metadata.version("transformers"))
        else:
            notes["weights"] = str(self._package_weights(job, model))
        if model == "sam3":
            notes["threshold"] = float(self._opt(job, "threshold", 0.05))
        else:
            notes["scores"] = "Rex-Omni gives no confidences: descending by output order"
        return notes

    def _queries(self, job: Job, coco: Mapping[str, Any]) -> dict[int, list[tuple[int, Any]]]:
        """Per image, ``(category_id, phrase)`` (text) or ``(category_id, xywh)`` (box)."""
        cats = {int(c["id"]): str(c["name"]) for c in coco.get("categories", [])}
        images = coco.get("images", [])
        queries: dict[int, list[tuple[int, Any]]] = {int(i["id"]): [] for i in images}
        if self._opt(job, "prompt", "text") == "text":
            for img in images:
                source = str(img.get("source", ""))
                own = [cid for cid, name in cats.items() if name.startswith(f"{source}/")]
                for cid in own or list(cats):
                    queries[int(img["id"])].append((cid, phrase(cats[cid])))
            return queries
        if job.prompts_json is None:
            raise TinysetError("box prompts need the job's P2SOD prompt file")
        anns = {int(a["id"]): a for a in coco.get("annotations", [])}
        for p in read_json(job.prompts_json).get("prompts", []):
            if not p.get("ann_ids"):
                raise TinysetError(f"{job.prompts_json}: prompt set of image {p.get('image_id')} "
                                   f"has no ann_ids (one-box prompts need the prompted instance)")
            ann = anns.get(int(p["ann_ids"][0]))
            if ann is None:
                raise TinysetError(f"{job.prompts_json}: annotation {p['ann_ids'][0]} not in "
                                   f"{job.eval_json}")
            queries.setdefault(int(p["image_id"]), []).append((int(p["category_id"]),
                                                               ann["bbox"]))
        return queries

    def predict(self, job: Job) -> Sequence[Detections]:
        """Prompt every image (text) or every prompt set (box) and collect the boxes."""
        from PIL import Image

        from tinyset_builder.progress import console, track

        model = self._model(job)
        prompt = str(self._opt(job, "prompt", "text"))
        coco = read_json(job.eval_json)
        images = coco.get("images", [])
        queries = self._queries(job, coco)
        split_hint = job.eval_json.stem if job.eval_json.stem in ("train", "val", "test") else None
        run, per_call, skipped = self._runner(job, model)
        out: list[Detections] = []
        chunk: list[tuple[int, Any]] = []

        def flush() -> None:
            parts = run([(pil, queries[iid]) for iid, pil in chunk], prompt)
            out.extend(merge(iid, p) for (iid, _), p in zip(chunk, parts, strict=True))
            chunk.clear()

        for img in track(images, f"{model} ({prompt} prompts) on {len(images)} images"):
            path = image_path(job.data_dir, str(img["file_name"]), img.get("split") or split_hint)
            chunk.append((int(img["id"]), Image.open(path).convert("RGB")))
            if len(chunk) >= per_call:
                flush()
        if chunk:
            flush()
        if skipped:
            write_json(job.work_dir / SKIPS_FILE, dict(sorted(skipped.items())), indent=2)
            console.print(f"rex-omni: parts of answers skipped {dict(sorted(skipped.items()))} "
                          f"(counts in {job.work_dir / SKIPS_FILE})")
        return out

    # -- runners: [(image, queries)] -> per image, (xyxy, scores, category_id) parts ----------
    def _runner(self, job: Job, model: str
                ) -> tuple[Callable[[list[tuple[Any, list[tuple[int, Any]]]], str],
                                    list[list[Part]]], int, Counter[str]]:
        backend = self._backend(job, model)
        skipped: Counter[str] = Counter()
        if backend != "transformers":
            from adapters import zeroshot_packages as pk

            if model == "sam3":
                one = pk.sam3_package(self._package_weights(job, model), device_of(job),
                                      float(self._opt(job, "threshold", 0.05)))
            else:
                backend_name = "vllm" if backend == "vllm" else "transformers"
                one = pk.rex_package(self._package_weights(job, model), backend_name,
                                     order_scores)
            return (lambda items, prompt: [one(pil, q, prompt) for pil, q in items]), 1, skipped
        folder, why = self.weights(job, model)
        if folder is None:
            raise TinysetError(f"{model}: {why}")
        device = device_of(job)
        if model == "sam3":
            return self._sam3_runner(job, folder, device), 1, skipped
        batch = max(1, int(self._opt(job, "batch_size", 4)))
        return self._rex_runner(job, folder, device, batch, skipped), batch, skipped

    def _sam3_runner(self, job: Job, folder: Path, device: str) -> Callable[..., list[list[Part]]]:
        from adapters import zeroshot_sam3

        sam = zeroshot_sam3.load(folder, device, float(self._opt(job, "threshold", 0.05)),
                                 int(self._opt(job, "batch_size", 8)),
                                 torch_dtype(str(self._opt(job, "dtype", "auto")), device))

        def run(items: list[tuple[Any, list[tuple[int, Any]]]], prompt: str) -> list[list[Part]]:
            out = []
            for pil, queries in items:
                if prompt == "text":
                    found = sam.text(pil, [q for _, q in queries])
                else:
                    found = sam.exemplars(pil, [xywh_to_xyxy(q) for _, q in queries])
                out.append([(b, s, cid) for (cid, _), (b, s) in zip(queries, found,
                                                                     strict=True)])
            return out

        return run

    def _rex_runner(self, job: Job, folder: Path, device: str, batch: int,
                    skipped: Counter[str]) -> Callable[..., list[list[Part]]]:
        from adapters import zeroshot_rex as rex

        net = rex.load(folder, device, torch_dtype(str(self._opt(job, "dtype", "auto")), device),
                       int(self._opt(job, "max_new_tokens", rex.MAX_NEW_TOKENS)))

        def run(items: list[tuple[Any, list[tuple[int, Any]]]], prompt: str) -> list[list[Part]]:
            # one request per image (text: all its phrases at once, as the authors' detection
            # task) or per prompt set (box); requests are generated ``batch`` at a time
            requests: list[tuple[int, Any, str, list[int]]] = []  # (item, image, prompt, cids)
            for i, (pil, queries) in enumerate(items):
                if prompt == "text":
                    if queries:
                        phrases = list(dict.fromkeys(q for _, q in queries))
                        requests.append((i, pil, rex.detection_prompt(phrases),
                                         [cid for cid, _ in queries]))
                else:
                    for cid, box in queries:
                        requests.append((i, pil, rex.visual_prompt(
                            xywh_to_xyxy(box), pil.width, pil.height), [cid]))
            out: list[list[Part]] = [[] for _ in items]
            for s in range(0, len(requests), batch):
                group = requests[s:s + batch]
                texts = net.answer([r[1] for r in group], [r[2] for r in group])
                for (i, pil, _, cids), text in zip(group, texts, strict=True):
                    answer = rex.parse_answer(text, pil.width, pil.height)
                    skipped.update(answer.skipped)
                    out[i] += self._rex_parts(answer, items[i][1], cids, prompt, skipped)
            return out

        return run

    @staticmethod
    def _rex_parts(answer: Any, queries: list[tuple[int, Any]], cids: list[int], prompt: str,
                   skipped: Counter[str]) -> list[Part]:
        """Boxes of one answer as parts: per prompted phrase (text), all boxes (box prompt)."""
        if prompt != "text":
            boxes = answer.all_boxes()
            return [(boxes, order_scores(len(boxes)), cids[0])]
        by_phrase: dict[str, list[int]] = {}
        for cid, text in queries:
            by_phrase.setdefault(text.casefold(), []).append(cid)
        parts: list[Part] = []
        for said, boxes in answer.boxes.items():
            owners = by_phrase.get(said.casefold())
            if owners is None:
                skipped["unprompted_phrase"] += len(boxes)
                continue
            parts += [(boxes, order_scores(len(boxes)), cid) for cid in owners]
        return parts
