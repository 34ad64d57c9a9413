"""Crashes: SIGKILL real ``tinyset`` subprocesses (build, derive, benchmark, publish --dry-run) at
random points, resume them, and compare with an uninterrupted run.

The kill points are drawn from a seeded generator over the uninterrupted run's own wall time
(so they land inside the run on a fast or a slow machine; nothing here asserts a duration). The
whole process group is killed (the build's worker pool too), so nothing gets to clean up.

After every kill, whatever is on disk must never pass for complete when it is not:

- every ``*.json`` outside ``*.part`` names parses (atomic writes: old file or new, never half);
- ``tinyset build --verify`` either verifies or fails with one line (no traceback);
- a derive variant folder with a ``meta.json`` has every file it lists, intact;
- a benchmark ``result.json`` that says ``ok`` has its complete ``predictions.json``;

and after the resumed run finishes, every output file is byte-identical to the uninterrupted
run's (the benchmark's ``result.json`` differs only in durations and timestamps, by design),
and no ``*.part`` file is left behind.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _hostile import CRASHES, ROOT, TINYSET, assert_no_secret, cli_env, run_cli

KILLS = 2  # kills per command (each at a fresh random point), then one resume to the end

pytestmark = pytest.mark.slow


def _kill_at(cmd: list[str], delay: float, env: dict[str, str] | None = None) -> bool:
    """Start ``cmd``, SIGKILL its process group after ``delay`` s; True if it was still running."""
    p = subprocess.Popen(cmd, env=env or cli_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    try:
        p.wait(timeout=delay)
        return False  # finished before the kill point: not a crash
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        return True


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but temporary ``*.part`` ones (checked separately)."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and not any(q.endswith(".part") for q in p.relative_to(root).parts)}


def _parts(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.part"))


def _json_files_parse(root: Path) -> None:
    """Atomic writes: every JSON file that has its final name is complete."""
    for p in root.rglob("*.json"):
        if ".part" in p.name or any(".part" in q for q in p.relative_to(root).parts):
            continue
        json.loads(p.read_bytes())


def _same_files(ref: Path, got: Path, *, skip: tuple[str, ...] = ()) -> None:
    a, b = _files(ref), _files(got)
    a = {k: v for k, v in a.items() if not k.startswith(skip)}
    b = {k: v for k, v in b.items() if not k.startswith(skip)}
    assert sorted(a) == sorted(b), (sorted(set(a) ^ set(b)))[:10]
    differ = [k for k in a if a[k] != b[k]]
    assert differ == [], f"differ after resume: {differ[:10]}"


def _kill_during(name: str, cmd: list[str], delay: float, fresh: Path,
                 env: dict[str, str] | None = None) -> int:
    """SIGKILL ``cmd`` after ``delay`` s; if it had already finished, delete its output
    ``fresh`` and try again sooner (a few times). Returns 1 if a running process was killed."""
    for _ in range(4):
        if _kill_at(cmd, delay, env):
            CRASHES[name] += 1
            return 1
        shutil.rmtree(fresh, ignore_errors=True)
        delay *= 0.3
    return 0


def _kill_points(seed: int, wall: float) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(0.15, 0.85) * max(wall, 1.0) for _ in range(KILLS)]


# ---------------------------------------------------------------------------------------------

def test_build_killed_and_resumed_is_byte_identical(raw: Path, reference_build: tuple[Path, float],
                                                   tmp_path: Path) -> None:
    ref, wall = reference_build
    out = tmp_path / "out"
    cmd = [TINYSET, "build", "--raw", str(raw), "--out", str(out), "--workers", "2"]
    killed = 0
    for delay in _kill_points(1, wall):
        killed += _kill_during("build", cmd, delay, out)
        if out.exists():
            _json_files_parse(out)
            p = subprocess.run([TINYSET, "build", "--out", str(out), "--verify"], env=cli_env(),
                               capture_output=True, text=True, cwd=ROOT)
            assert "Traceback" not in p.stderr
            if p.returncode != 0:
                assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert killed >= 1
    # Half-written leftovers, as a kill inside a write leaves them, must be ignored and swept.
    (out / "images" / "train").mkdir(parents=True, exist_ok=True)
    (out / "images" / "train" / ".visdrone__x__x0_y0.jpg.k3j2.part").write_bytes(b"\xff\xd8half")
    run_cli(cmd)
    assert _parts(out) == []
    _same_files(ref, out)
    assert_no_secret(out)


@pytest.fixture(scope="module")
def derive_data(tmp_path_factory: pytest.TempPathFactory, reference_build: tuple[Path, float],
                ) -> Path:
    """The build's annotation files (derive reads no pixels)."""
    ref, _ = reference_build
    data = tmp_path_factory.mktemp("derive") / "data"
    shutil.copytree(ref / "annotations", data / "annotations")
    shutil.copy(ref / "build.json", data / "build.json")
    return data


def _meta_folders_complete(variants: Path) -> None:
    for meta in variants.glob("*/meta.json"):
        doc = json.loads(meta.read_bytes())
        files = doc.get("files")
        names = files if isinstance(files, (list, dict)) else []
        for name in names:
            path = meta.parent / name
            assert path.is_file(), f"{meta} lists {name}, which is missing"
            json.loads(path.read_bytes())


def test_derive_killed_and_resumed_is_byte_identical(derive_data: Path, tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    shutil.copytree(derive_data, ref)
    wall, _ = run_cli([TINYSET, "derive", str(ref), "--setting", "all"])
    got = tmp_path / "got"
    shutil.copytree(derive_data, got)
    cmd = [TINYSET, "derive", str(got), "--setting", "all"]
    killed = 0
    for delay in _kill_points(2, wall):
        killed += _kill_during("derive", cmd, delay, got / "variants")
        if (got / "variants").is_dir():
            _json_files_parse(got / "variants")
            _meta_folders_complete(got / "variants")
    assert killed >= 1
    half = got / "variants" / ".noise-20.k3j2.part"
    half.mkdir(parents=True, exist_ok=True)
    (half / "train.json").write_bytes(b'{"images": [')
    run_cli(cmd)
    # derive does not sweep temporary folders of killed runs (a concurrent derive may own
    # them); they are never read: no variant name starts with "." and none is complete.
    assert all(p.startswith("variants/.") for p in _parts(got)), _parts(got)
    _same_files(ref / "variants", got / "variants")
    assert_no_secret(got)


# ---------------------------------------------------------------------------------------------

MANIFEST = """
[[methods]]
id = "o{k}"
name = "Oracle {k}"
paradigm = "full"
setting = "full"
backbone = "none"
schedule = "1x"
adapter = "fake_adapters:OracleAdapter"
"""


def _stable_record(path: Path) -> dict:
    """A result.json without what legitimately changes between runs (times, durations)."""
    rec = json.loads(path.read_bytes())
    for key in ("durations", "started", "finished"):
        rec.pop(key, None)
    return rec


def test_benchmark_killed_and_resumed_gives_the_same_results(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "benchmark"))
    try:
        from bench_fixture import write_tiny_dataset
    finally:
        sys.path.pop(0)
    data = write_tiny_dataset(tmp_path / "data", size=64,
                              counts={"train": 6, "val": 2, "test": 3}, objects=4)
    manifest = tmp_path / "methods.toml"
    manifest.write_text("".join(MANIFEST.format(k=k) for k in range(2)))
    env = cli_env(PYTHONPATH=str(ROOT / "tests" / "benchmark"))

    def cmd(runs: Path) -> list[str]:
        return [TINYSET, "benchmark", "--data", str(data), "--paradigm", "full",
                "--methods", "o0,o1", "--manifest", str(manifest), "--runs", str(runs),
                "--schedule", "smoke", "--device", "cpu"]

    # Same runs path for both (records name their paths): run, move aside, run again killed.
    runs, ref = tmp_path / "runs", tmp_path / "ref"
    wall, _ = run_cli(cmd(runs), env)
    runs.rename(ref)
    killed = 0
    for delay in _kill_points(3, wall):
        killed += _kill_during("benchmark", cmd(runs), delay, runs, env)
        if runs.is_dir():
            _json_files_parse(runs)
            for res in runs.rglob("result.json"):
                rec = json.loads(res.read_bytes())
                if rec.get("status") == "ok":  # ok means its predictions are complete
                    json.loads((res.parent / "predictions.json").read_bytes())
    assert killed >= 1
    run_cli(cmd(runs), env)
    assert _parts(runs) == []
    assert_no_secret(runs)  # HF_TOKEN is in the runner's environment, never in its records
    ref_files, got_files = _files(ref), _files(runs)
    assert sorted(ref_files) == sorted(got_files)
    for name in ref_files:
        if name.endswith("result.json"):
            assert _stable_record(ref / name) == _stable_record(runs / name)
        elif not name.endswith("trained.txt"):  # counts training starts: killed ones too
            assert ref_files[name] == got_files[name], name


def test_publish_dry_run_killed_and_resumed_is_byte_identical(
        reference_build: tuple[Path, float], tmp_path: Path) -> None:
    out, _ = reference_build

    def cmd(export: Path) -> list[str]:
        return [TINYSET, "publish", str(out), "--repo-id", "tinyset/test", "--export-dir",
                str(export), "--dry-run", "--shard-mb", "1"]

    wall, _ = run_cli(cmd(tmp_path / "ref"))
    got = tmp_path / "got"
    killed = 0
    for delay in _kill_points(4, wall):
        killed += _kill_during("publish", cmd(got), delay, got)
        if got.is_dir():
            _json_files_parse(got)
    assert killed >= 1
    run_cli(cmd(got))
    assert _parts(got) == []
    _same_files(tmp_path / "ref", got)
    assert_no_secret(got)
