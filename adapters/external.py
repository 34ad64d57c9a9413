"""External adapter: research repositories run in the user's own checkout and environment.

Each Table I method without a pip-installable implementation (RFLA, HS-FPN, DN-TOD, SSD-Det,
PseCo, Co-mining, Calibrated Teacher, P2BNet, PointOBB-v2/v3, Point Teacher, Point2RBox-v3) has a
**recipe**: a TOML file under ``adapters/recipes/`` (data, not code) that says

* where the code lives (``repo_url``), its framework, licence and how to install it;
* the data layout it reads (``data = "coco"`` boxes, ``"coco-points"`` point labels, or
  ``"dota"``: the point-supervised oriented rows, which get the COCO point export *and* a DOTA
  export — ``images/`` + ``labelTxt/``, :func:`adapters.dota_export.export_dota`, named for
  MMRotate — of the train file (``mode="points"``: polygons centred on the points) and of the
  evaluation split, under ``work_dir/data/dota/{train,eval}/``);
* the configs to generate (``[configs.<name>]``: the repository's base config plus TinySet's
  overrides — one class, 1024² input, 3 epochs = 1×, up to 3,000 detections — rendered from
  ``recipes/templates/<template>.py.tmpl``; ``repo = "detector"`` resolves the base config in
  the detector checkout, ``extra_epochs`` adds epochs, e.g. a pass that resumes a finished run);
* the train commands (``train``, run in order) and the test command (``test``), with
  placeholders ``{python} {repo} {work_dir} {config} {config:NAME} {checkpoint}
  {checkpoint:NAME} {results_prefix} {seed} {epochs} {num_classes} {data_dir} {train_ann}
  {eval_ann} {unlabeled_ann}`` (``checkpoint`` / ``checkpoints`` paths may use them too),
  for ``data = "dota"`` also ``{train_dota} {eval_dota}`` (export roots, ending in ``/``), and
  ``{tinyset_python}`` (this toolkit's interpreter, for its converters between steps);
* an optional second checkout for the final detector (``[detector]``: ``repo_env``,
  ``repo_url``, ``install``; options ``detector_repo`` / ``detector_python``, placeholders
  ``{detector_repo} {detector_python}``), for methods whose pseudo labels train a detector of
  another code base (PointOBB-v3 -> MMRotate 0.3);
* where the checkpoint and the results land (``checkpoint``, ``results``) and the results'
  format (``results_format``): ``"coco"`` (mmdet's ``.bbox.json``), ``"dota-txt"`` (a DOTA
  submission folder of ``Task1_<class>.txt``) or ``"rotated-json"`` (MMRotate 1.x
  ``.bbox.json`` of ``[cx, cy, w, h, angle]``); rotated results are kept and converted beside
  them to ``<results_prefix>.hbox.bbox.json``, the COCO results of each rotated box's
  enclosing horizontal box (TinySet is evaluated with horizontal boxes).

Options (methods.toml ``options`` or ``job.extra``; extra wins): ``recipe`` (required), ``repo``
(the checkout; else the environment variable named by the recipe's ``repo_env``), ``python``
(else the recipe's ``TINYSET_PYTHON_*`` variable, so each repository keeps its own
environment in one benchmark run, else ``job.env_python`` / ``--env-python``),
``recipe_file`` (a user's own TOML, same schema), ``base_config`` (replaces the main config's
base), ``manual_step_done`` (for recipes with a one-time manual step), ``smoke_epochs`` /
``smoke_size``, ``batch``.

Commands run with ``cwd`` = the checkout and the checkout on ``PYTHONPATH``; output goes to
``work_dir/<step>.log``; a failing command raises with the log's last lines.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Template
from typing import Any, Literal

from adapters.base import Detections, Job
from adapters.coco_data import Export, detections_from_coco_results, export_coco
from adapters.dota_export import DotaExport, dota_class, export_dota, rotated_to_coco_results
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import read_json, write_json

RECIPES_DIR = Path(__file__).with_name("recipes")
TEMPLATES_DIR = RECIPES_DIR / "templates"
PAPER_SIZE = 1024
MAX_DET = 3000
LOG_TAIL = 15
RESULTS_FORMATS = ("coco", "dota-txt", "rotated-json")


# ---------------------------------------------------------------------------------------------
# recipes

def recipe_names() -> list[str]:
    """Names of the shipped recipes (``adapters/recipes/<name>.toml``)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def load_recipe(name: str, path: Path | None = None) -> dict[str, Any]:
    """Read a recipe by name (or from ``path``) and check its required keys.

    Raises:
        TinysetError: unknown recipe, unreadable TOML or a missing key (one line).
    """
    file = path or RECIPES_DIR / f"{name}.toml"
    if not file.is_file():
        raise TinysetError(f"unknown external recipe {name!r} ({file} not found); known: "
                           f"{', '.join(recipe_names())}")
    try:
        recipe = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise TinysetError(f"{file}: not valid TOML ({e})") from None
    for key in ("name", "repo_url", "install", "repo_env", "data", "train", "test",
                "results"):
        if key not in recipe:
            raise TinysetError(f"{file}: recipe lacks {key!r}")
    if recipe["data"] not in ("coco", "coco-points", "dota"):
        raise TinysetError(f"{file}: data must be coco, coco-points or dota")
    if recipe.setdefault("results_format", "coco") not in RESULTS_FORMATS:
        raise TinysetError(f"{file}: results_format must be one of {', '.join(RESULTS_FORMATS)}")
    if "detector" in recipe and "repo_env" not in recipe["detector"]:
        raise TinysetError(f"{file}: [detector] lacks 'repo_env'")
    recipe.setdefault("configs", {})
    recipe["_file"] = str(file)
    return recipe


def python_env(recipe: Mapping[str, Any]) -> str:
    """The variable naming a recipe's interpreter: ``TINYSET_REPO_X`` -> ``TINYSET_PYTHON_X``."""
    return str(recipe.get("python_env") or recipe["repo_env"].replace("_REPO_", "_PYTHON_"))


def run_logged(cmd: Sequence[str], cwd: Path, log: Path, *, pythonpath: Path | None = None,
               ) -> None:
    """Run ``cmd`` in ``cwd`` with output to ``log``; raise with the log's tail on failure.

    Raises:
        TinysetError: non-zero exit (one line: the command, the log path, its last lines).
    """
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath.resolve()),
                                                        env.get("PYTHONPATH", "")) if p)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.run(list(cmd), cwd=cwd, env=env, stdout=out,
                              stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL:]
        raise TinysetError(f"{cmd[0]} {' '.join(cmd[1:3])} ... exited with "
                           f"{proc.returncode} (log {log}): " + " | ".join(tail))


_PLACEHOLDER = re.compile(r"\{([a-z_]+(?::[a-z0-9_]+)?)\}")


def fill(text: str, placeholders: Mapping[str, str]) -> str:
    """Replace ``{name}`` / ``{name:config}`` placeholders (str.format would read ``:x`` as a
    format spec); braces around anything but a lowercase name (a dict literal) are left alone.

    Raises:
        TinysetError: an unknown placeholder (names it).
    """
    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in placeholders:
            raise TinysetError(f"recipe text {text!r}: unknown placeholder {{{m.group(1)}}}")
        return placeholders[m.group(1)]

    return _PLACEHOLDER.sub(sub, text)


def _render_config(recipe: Mapping[str, Any], name: str, spec: Mapping[str, Any],
                   values: Mapping[str, Any]) -> str:
    """One generated config from its template (``spec["template"]``) and ``values``."""
    template = TEMPLATES_DIR / f"{spec.get('template', 'mmdet2')}.py.tmpl"
    if not template.is_file():
        raise TinysetError(f"{recipe['_file']}: configs.{name}: no template {template.name}")
    size, epochs = values["size"], values["epochs"]
    py = repr
    standard = spec.get("pipeline", "standard") == "standard"
    pipelines = (Template((TEMPLATES_DIR / "pipelines_mmdet2.py.tmpl").read_text())
                 .substitute(size=size) if standard else
                 "# pipelines: the base config's own (recipe pipeline = \"keep\")")
    train_ann = fill(spec.get("train_ann", "{train_ann}"), values["placeholders"])
    eval_ann = fill(spec.get("eval_ann", "{eval_ann}"), values["placeholders"])
    kind = spec.get("dataset", "plain")
    if kind == "self":  # SoftTeacher-style sup/unsup sources, both the (sparse) train file
        train_dataset = (f"sup=dict(type='CocoDataset', classes=classes, ann_file={py(train_ann)}, "
                         f"img_prefix=data_root),\n        unsup=dict(type='CocoDataset', "
                         f"classes=classes, ann_file={py(train_ann)}, img_prefix=data_root)")
    elif kind == "semi":
        if values["unlabeled_ann"] is None:
            raise TinysetError(f"recipe {recipe['name']}: needs unlabeled images (a semi "
                               f"setting: train_labeled.json + train_unlabeled.json)")
        train_dataset = (f"sup=dict(type='CocoDataset', classes=classes, ann_file={py(train_ann)}, "
                         f"img_prefix=data_root),\n        unsup=dict(type='CocoDataset', "
                         f"classes=classes, ann_file={py(values['unlabeled_ann'])}, "
                         f"img_prefix=data_root)")
    else:
        train_dataset = (f"type='CocoDataset', classes=classes, ann_file={py(train_ann)}, "
                         "img_prefix=data_root"
                         + (", pipeline=train_pipeline" if standard else ""))
    if spec.get("runner", "epoch") == "iter":
        iters = max(1, math.ceil(epochs * values["n_train"] / values["batch"]))
        schedule = (f"runner = dict(type='IterBasedRunner', max_iters={iters})\n"
                    f"lr_config = dict(step=[{max(1, iters * 2 // 3)}, {max(1, iters * 8 // 9)}])")
    else:
        steps = sorted({max(1, round(epochs * 2 / 3)), max(1, round(epochs * 8 / 9))})
        schedule = (f"runner = dict(type='EpochBasedRunner', max_epochs={epochs})\n"
                    f"lr_config = dict(step={steps})")
    base = values["base_config"] if name == "main" and values.get("base_config") else \
        spec["base_config"]
    root = values["detector_repo"] if spec.get("repo") == "detector" else values["repo"]
    # the rotated templates (mmrotate03, mmrotate1, pointobb_mmdet2): DOTA folders, the
    # schedule as numbers (each template writes its framework's runner), overrides with
    # $max_det / $num_classes / $half_epochs / $total_iters and {placeholders} filled in
    max_epochs = epochs + int(spec.get("extra_epochs", 0))
    total_iters = max(1, math.ceil(epochs * values["n_train"] / values["batch"]))
    ph = values["placeholders"]
    dota = {key: py(fill(spec.get(key, default), ph)) for key, default in (
        ("train_labels", "{train_dota}labelTxt/"), ("train_images", "{train_dota}images/"),
        ("eval_labels", "{eval_dota}labelTxt/"), ("eval_images", "{eval_dota}images/"))} \
        if "train_dota" in ph else {}

    def code(text: str) -> str:
        for key, value in (("$max_det", MAX_DET), ("$num_classes", len(values["classes"])),
                           ("$half_epochs", max(1, round(epochs / 2))),
                           ("$total_iters", total_iters)):
            text = text.replace(key, str(value))
        return fill(text, ph)

    return Template(template.read_text(encoding="utf-8")).substitute(
        recipe=recipe["name"], size=size, epochs=epochs, seed=values["seed"],
        base_config=py(str(Path(root) / base)),
        classes=py(tuple(values["classes"])), images_root=py(values["images_root"]),
        pipelines=pipelines, batch=values["batch"], train_dataset=train_dataset,
        eval_ann=py(eval_ann), train_ann=py(train_ann),
        test_pipeline_ref=", pipeline=test_pipeline" if standard else "",
        model_override=code(spec.get("model_override", "dict()")),
        schedule=schedule, extra=code(spec.get("extra", "")), max_epochs=max_epochs,
        steps=sorted({max(1, round(max_epochs * 2 / 3)), max(1, round(max_epochs * 8 / 9))}),
        max_det=MAX_DET, results_prefix=py(ph["results_prefix"]), work_dir=py(ph["work_dir"]),
        **dota)


# ---------------------------------------------------------------------------------------------
# the adapter

class ExternalAdapter:
    """Runs a research repository's own train/test commands (see the module docstring)."""

    @staticmethod
    def _opt(job: Job, key: str, default: Any = None) -> Any:
        return job.extra.get(key, job.options.get(key, default))

    def recipe(self, job: Job) -> dict[str, Any]:
        """The job's recipe (option ``recipe``, or the user's ``recipe_file``)."""
        name = self._opt(job, "recipe")
        if not name:
            raise TinysetError(f"method {job.method.get('id')}: external adapter needs option "
                               f"'recipe' ({', '.join(recipe_names())})")
        file = self._opt(job, "recipe_file")
        return load_recipe(str(name), Path(file) if file else None)

    def _repo(self, job: Job, recipe: Mapping[str, Any]) -> Path | None:
        repo = self._opt(job, "repo") or os.environ.get(recipe["repo_env"])
        return Path(repo).expanduser() if repo else None

    def _detector(self, job: Job, recipe: Mapping[str, Any]) -> tuple[Path | None, str | None]:
        """The optional second checkout (``[detector]``) and its interpreter (else ``python``)."""
        det = recipe.get("detector")
        if det is None:
            return None, None
        repo = self._opt(job, "detector_repo") or os.environ.get(det["repo_env"])
        python = (self._opt(job, "detector_python") or os.environ.get(python_env(det))
                  or self._python(job, recipe))
        return (Path(repo).expanduser() if repo else None), python

    def _python(self, job: Job, recipe: Mapping[str, Any] | None = None) -> str | None:
        """Option ``python``, else the recipe's ``TINYSET_PYTHON_*`` variable (one environment
        per repository), else ``--env-python``."""
        recipe = recipe or self.recipe(job)
        return (self._opt(job, "python") or os.environ.get(python_env(recipe))
                or job.env_python)

    def unavailable(self, job: Job) -> str | None:
        """What is missing: the checkout, its environment, a manual step, or a data layout."""
        try:
            recipe = self.recipe(job)
        except TinysetError as e:
            return str(e)
        how = f"git clone {recipe['repo_url']} and {recipe['install']}"
        repo = self._repo(job, recipe)
        if repo is None:
            return (f"{recipe['name']}: no checkout named; {how}, then pass its path as option "
                    f"'repo' or set {recipe['repo_env']}")
        if not repo.is_dir():
            return f"{recipe['name']}: checkout {repo} not found; {how}"
        python = self._python(job, recipe)
        if python is None:
            return (f"{recipe['name']}: name the checkout's environment with "
                    f"{python_env(recipe)}, option 'python' or --env-python; "
                    f"{recipe['install']}")
        if shutil.which(python) is None:
            return f"{recipe['name']}: interpreter {python} not found or not executable"
        detector, detector_python = self._detector(job, recipe)
        if "detector" in recipe:
            det = recipe["detector"]
            if detector is None or not detector.is_dir():
                return (f"{recipe['name']}: its detector runs in a second checkout: git clone "
                        f"{det.get('repo_url', '')} and {det.get('install', 'install it')}, then "
                        f"pass its path as option 'detector_repo' or set {det['repo_env']}")
            if detector_python is None or shutil.which(detector_python) is None:
                return f"{recipe['name']}: detector interpreter {detector_python} not found"
        for cname, spec in recipe["configs"].items():
            base = (self._opt(job, "base_config") if cname == "main" else None) or \
                spec["base_config"]
            root = detector if spec.get("repo") == "detector" and detector else repo
            if not (root / base).is_file():
                return (f"{recipe['name']}: {root / base} not found in the checkout "
                        f"({spec.get('missing_note', 'is it the right repository/branch?')})")
        if recipe.get("manual_step") and not self._opt(job, "manual_step_done", False):
            return (f"{recipe['name']}: one-time manual step: {recipe['manual_step']} "
                    f"(then set option manual_step_done = true)")
        if recipe.get("needs_unlabeled") and job.unlabeled_json is None:
            return f"{recipe['name']}: needs a semi setting (labeled + unlabeled images)"
        return None

    # -- helpers ---------------------------------------------------------------------------
    def _schedule(self, job: Job) -> tuple[int, int]:
        if job.schedule == "smoke":
            return (int(self._opt(job, "smoke_epochs", 1)), int(self._opt(job, "smoke_size", 256)))
        return (max(1, math.ceil(float(job.method.get("epochs", 3.0)))),
                int(self._opt(job, "size", PAPER_SIZE)))

    def _prepare(self, job: Job) -> dict[str, Any]:
        """Export the data, render the configs, return everything the commands need."""
        recipe = self.recipe(job)
        repo = self._repo(job, recipe)
        if repo is None or self._python(job, recipe) is None:
            raise TinysetError(self.unavailable(job) or "external adapter: not runnable")
        work = job.work_dir.resolve()
        data = work / "data"
        agnostic = bool(self._opt(job, "class_agnostic", True))
        # the "dota" recipes are the point-supervised oriented rows: points in both layouts
        mode: Literal["boxes", "points"] = ("points" if recipe["data"] in ("coco-points", "dota")
                                            else "boxes")
        train = export_coco(job.train_json, job.data_dir, data / "train.json",
                            class_agnostic=agnostic, mode=mode)
        test = export_coco(job.eval_json, job.data_dir, data / "eval.json",
                           class_agnostic=agnostic)
        unlabeled: Export | None = None
        if job.unlabeled_json is not None:
            unlabeled = export_coco(job.unlabeled_json, job.data_dir, data / "unlabeled.json",
                                    class_agnostic=agnostic)
        epochs, size = self._schedule(job)
        placeholders = {"python": str(self._python(job, recipe)), "repo": str(repo.resolve()),
                        "work_dir": str(work), "seed": str(job.seed), "epochs": str(epochs),
                        "data_dir": str(job.data_dir.resolve()),
                        "num_classes": str(len(train.classes)),
                        "train_ann": str(train.path), "eval_ann": str(test.path),
                        "unlabeled_ann": str(unlabeled.path) if unlabeled else "",
                        "results_prefix": str(work / "results"),
                        "tinyset_python": sys.executable}
        dota: dict[str, DotaExport] = {}
        if recipe["data"] == "dota":
            dota = {"train": export_dota(job.train_json, job.data_dir, data / "dota" / "train",
                                         class_agnostic=agnostic, mode=mode, for_mmrotate=True),
                    "eval": export_dota(job.eval_json, job.data_dir, data / "dota" / "eval",
                                        class_agnostic=agnostic, for_mmrotate=True)}
            placeholders.update({f"{k}_dota": f"{v.root}/" for k, v in dota.items()})
        detector, detector_python = self._detector(job, recipe)
        if "detector" in recipe:
            if detector is None:
                raise TinysetError(self.unavailable(job) or "external adapter: no detector")
            placeholders.update(detector_repo=str(detector.resolve()),
                                detector_python=str(detector_python))
        for cname in recipe["configs"]:
            suffix = "" if cname == "main" else f"_{cname}"
            placeholders[f"config:{cname}"] = str(work / f"tinyset_config{suffix}.py")
            placeholders[f"work_dir:{cname}"] = str(work / cname) if suffix else str(work)
        placeholders["config"] = placeholders.get("config:main", "")
        for key, rel in recipe.get("checkpoints", {"main": recipe.get("checkpoint",
                                                                      "latest.pth")}).items():
            placeholders[f"checkpoint:{key}"] = str(work / fill(rel, placeholders))
        placeholders["checkpoint"] = placeholders.get("checkpoint:main", "")
        values = {"size": size, "epochs": epochs, "seed": job.seed, "repo": str(repo.resolve()),
                  # DOTA loaders match labelTxt's one-word class tokens
                  "classes": (tuple(dota_class(c) for c in train.classes) if dota
                              else train.classes), "images_root": str((job.data_dir / "images")
                                                               .resolve()) + "/",
                  "batch": int(self._opt(job, "batch", 2)), "eval_ann": str(test.path),
                  "unlabeled_ann": str(unlabeled.path) if unlabeled else None,
                  "n_train": train.counts["images"], "placeholders": placeholders,
                  "base_config": self._opt(job, "base_config"),
                  "detector_repo": placeholders.get("detector_repo")}
        configs = {}
        for cname, spec in recipe["configs"].items():
            text = _render_config(recipe, cname, spec, values)
            path = Path(placeholders[f"config:{cname}"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            configs[cname] = str(path)
        return {"recipe": recipe, "repo": repo, "work": work, "train": train, "test": test,
                "placeholders": placeholders, "configs": configs, "epochs": epochs,
                "size": size, "dota": dota}

    @staticmethod
    def _command(args: Sequence[str], placeholders: Mapping[str, str]) -> list[str]:
        return [fill(a, placeholders) for a in args]

    @staticmethod
    def _run(cmd: Sequence[str], repo: Path, log: Path) -> None:
        run_logged(cmd, repo, log, pythonpath=repo)

    # -- protocol --------------------------------------------------------------------------
    def train(self, job: Job) -> dict[str, Any]:
        """Export, render configs, run the recipe's train commands (skipped when done)."""
        prep = self._prepare(job)
        recipe, work, ph = prep["recipe"], prep["work"], prep["placeholders"]
        commands = [self._command(c, ph) for c in recipe["train"]]
        digest = hashlib.sha256(json.dumps(
            {"commands": commands, "configs": {k: Path(v).read_text() for k, v in
                                              prep["configs"].items()},
             "train": hashlib.sha256(prep["train"].path.read_bytes()).hexdigest()},
            sort_keys=True).encode()).hexdigest()[:16]
        notes: dict[str, Any] = {
            "recipe": recipe["name"], "repo": str(prep["repo"]), "repo_url": recipe["repo_url"],
            "licence": recipe.get("licence", "not stated"), "configs": prep["configs"],
            "epochs": prep["epochs"], "input_size": prep["size"],
            "train_commands": [" ".join(c) for c in commands], "export": prep["train"].counts,
            "config_digest": digest}
        if prep["dota"]:
            notes["dota_export"] = {k: {"root": str(v.root), "images": v.images,
                                        "objects": v.objects, "ignored": v.ignored}
                                    for k, v in prep["dota"].items()}
        if recipe.get("notes"):
            notes["recipe_notes"] = recipe["notes"]
        done = work / "external_done.json"
        if done.is_file() and read_json(done).get("config_digest") == digest \
                and Path(ph["checkpoint"]).exists():
            return {**notes, "reused": ph["checkpoint"]}
        for i, cmd in enumerate(commands):
            self._run(cmd, prep["repo"], work / f"train_{i}.log")
        if not Path(ph["checkpoint"]).exists():
            raise TinysetError(f"{recipe['name']}: training finished but {ph['checkpoint']} "
                               f"was not written (recipe 'checkpoint' wrong?)")
        write_json(done, {"config_digest": digest, "checkpoint": ph["checkpoint"]}, indent=1)
        return {**notes, "checkpoint": ph["checkpoint"]}

    def predict(self, job: Job) -> Sequence[Detections]:
        """Run the recipe's test command and parse its results (rotated ones via their
        enclosing horizontal boxes, written beside them as COCO results)."""
        prep = self._prepare(job)
        recipe, ph = prep["recipe"], prep["placeholders"]
        results = Path(self._command([recipe["results"]], ph)[0])
        if results.is_dir():  # MMRotate 0.3 refuses to write into an existing submission dir
            shutil.rmtree(results)
        results.unlink(missing_ok=True)
        self._run(self._command(recipe["test"], ph), prep["repo"], prep["work"] / "test.log")
        if not results.exists():
            raise TinysetError(f"{recipe['name']}: test command wrote no {results}")
        if recipe["results_format"] != "coco":
            train: Export = prep["train"]
            categories = dict(zip([dota_class(c) for c in train.classes], train.to_dataset,
                                  strict=True))  # both in exported-id order
            coco = Path(f"{ph['results_prefix']}.hbox.bbox.json")
            write_json(coco, rotated_to_coco_results(results, job.eval_json, categories))
            results = coco
        return detections_from_coco_results(results, job.eval_json, prep["train"].to_dataset)
