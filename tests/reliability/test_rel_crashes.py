"""Crashes: SIGKILL real ``tinyset`` subprocesses (build, derive, benchmark, publish --dry-run) in
the middle of their work, resume them, and compare with an uninterrupted run.

The kill is deterministic: with ``TINYSET_KILL_AT_WRITE=N`` in its environment, a process
SIGKILLs its whole process group (the build's worker pool too) at its N-th atomic write, after
the temporary file is complete and before the rename (``tinyset_builder.io.kill_here_if_asked``).
So nothing gets to clean up, and every kill is known to have landed mid-run: each one must end
the command by SIGKILL, leave a ``*.part`` file behind, and leave the command's final output
missing. ``N`` is per process; the values below are well inside each command's run (each test
fails, asking for a smaller ``N``, if the command finishes first).

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
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _hostile import CRASHES, ROOT, TINYSET, assert_no_secret, cli_env, run_cli

#: The atomic write at which each command is killed, twice in a row on the same output (the
#: second run resumes what the first left), then it runs to the end. Counted per process: for
#: the build, the N-th write of whichever process (main or pool worker) gets there first.
KILL_AT = {"build": (1, 7), "derive": (1, 30), "benchmark": (2, 4), "publish": (1, 30)}

pytestmark = pytest.mark.slow


def _kill_at_write(name: str, cmd: list[str], n: int, out: Path,
                   env: dict[str, str] | None = None) -> None:
    """Run ``cmd`` until its ``n``-th atomic write SIGKILLs it; check that the kill landed."""
    p = subprocess.run(cmd, env={**(env or cli_env()), "TINYSET_KILL_AT_WRITE": str(n)},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       start_new_session=True, cwd=ROOT, timeout=600)
    assert p.returncode == -signal.SIGKILL, (
        f"{name} ended with exit code {p.returncode} before its atomic write #{n}: lower KILL_AT")
    assert _parts(out), f"{name}: the kill at write #{n} left no half-done write behind"
    CRASHES[name] += 1


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


# ---------------------------------------------------------------------------------------------

def test_build_killed_and_resumed_is_byte_identical(raw: Path, reference_build: tuple[Path, float],
                                                   tmp_path: Path) -> None:
    ref, _ = reference_build
    out = tmp_path / "out"
    cmd = [TINYSET, "build", "--raw", str(raw), "--out", str(out), "--workers", "2"]
    for n in KILL_AT["build"]:
        _kill_at_write("build", cmd, n, out)
        assert not (out / "build.json").exists()  # the final output
        _json_files_parse(out)
        p = subprocess.run([TINYSET, "build", "--out", str(out), "--verify"], env=cli_env(),
                           capture_output=True, text=True, cwd=ROOT)
        assert "Traceback" not in p.stderr
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
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
    run_cli([TINYSET, "derive", str(ref), "--setting", "all"])
    got = tmp_path / "got"
    shutil.copytree(derive_data, got)
    cmd = [TINYSET, "derive", str(got), "--setting", "all"]
    for n in KILL_AT["derive"]:
        _kill_at_write("derive", cmd, n, got / "variants")
        done = sorted(m.parent.name for m in (got / "variants").glob("*/meta.json"))
        assert len(done) < len(list((ref / "variants").glob("*/meta.json"))), done
        _json_files_parse(got / "variants")
        _meta_folders_complete(got / "variants")
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
    run_cli(cmd(runs), env)
    runs.rename(ref)
    for n in KILL_AT["benchmark"]:
        _kill_at_write("benchmark", cmd(runs), n, runs, env)
        results = list(runs.rglob("result.json"))
        assert len(results) < len(list(ref.rglob("result.json")))
        _json_files_parse(runs)
        for res in results:
            rec = json.loads(res.read_bytes())
            if rec.get("status") == "ok":  # ok means its predictions are complete
                json.loads((res.parent / "predictions.json").read_bytes())
    run_cli(cmd(runs), env)
    assert _parts(runs) == []  # the resumed runs swept the temporary files of killed writes
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

    run_cli(cmd(tmp_path / "ref"))
    got = tmp_path / "got"
    for n in KILL_AT["publish"]:
        _kill_at_write("publish", cmd(got), n, got)
        assert not (got / "README.md").exists()  # the dataset card is written last
        _json_files_parse(got)
    run_cli(cmd(got))
    assert _parts(got) == []
    _same_files(tmp_path / "ref", got)
    assert_no_secret(got)
