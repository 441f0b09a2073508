"""Packaging checks: what a user installs is one import name, and the example claim runs on it.

    python .ci/check_package.py [--constraints FILE]

1. Builds a wheel from the tree, and an sdist with a wheel built from it (`python -m build`).
2. The wheel's only top-level import name is `mechclaims`; it holds the package data the plugins
   read at run time; the sdist's wheel holds the same files with the same bytes.
3. A fresh venv gets the wheel (not the checkout); examples/own-claim is copied to a temporary
   directory next to a `model.py` of the user's own: both import, and `pytest` there is green
   and writes its report.
Exits non-zero with a one-line reason on the first failure.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DATA = ("mechclaims/fixtures/golden/seed_minigpt.npz",)
USER_MODEL = 'WHO = "the user\'s own model.py"\n'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--constraints", type=Path, help="pip constraints for the example's venv")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mechclaims-package-") as tmp:
        work = Path(tmp)
        wheel = build(work / "tree", "--wheel")
        from_sdist = build(work / "sdist")
        check_wheel(wheel, from_sdist)
        run_example(work, wheel, args.constraints)
    print("package: one import name (mechclaims), sdist and wheel agree, the example is green")
    return 0


def fail(message: str) -> None:
    print(f"check_package: {message}", file=sys.stderr)
    raise SystemExit(1)


def run(*command: str | Path, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        print(done.stdout[-4000:], done.stderr[-4000:], sep="\n", file=sys.stderr)
        fail(f"`{' '.join(map(str, command))}` exited with {done.returncode}")
    return done.stdout


def build(outdir: Path, *flags: str) -> Path:
    """The wheel `python -m build` makes (with no flag: from the sdist it makes first)."""
    run(sys.executable, "-m", "build", "--outdir", outdir, *flags, ROOT)
    wheels = sorted(outdir.glob("*.whl"))
    if len(wheels) != 1:
        fail(f"expected one wheel in {outdir}, found {[path.name for path in wheels]}")
    return wheels[0]


def contents(wheel: Path) -> dict[str, str]:
    """Every file of a wheel but its RECORD, with the sha256 of its bytes."""
    with zipfile.ZipFile(wheel) as archive:
        return {
            name: hashlib.sha256(archive.read(name)).hexdigest()
            for name in archive.namelist()
            if not name.endswith(".dist-info/RECORD")
        }


def check_wheel(wheel: Path, from_sdist: Path) -> None:
    files = contents(wheel)
    top_level = {name.split("/", 1)[0] for name in files if ".dist-info/" not in name}
    if top_level != {"mechclaims"}:
        fail(f"{wheel.name}: top-level names {sorted(top_level)}, expected ['mechclaims']")
    missing = [name for name in PACKAGE_DATA if name not in files]
    if missing:
        fail(f"{wheel.name} lacks package data {missing}")
    other = contents(from_sdist)
    if files != other:
        differ = sorted(set(files.items()) ^ set(other.items()))[:5]
        fail(f"the sdist's wheel differs from the tree's in {differ}")


def run_example(work: Path, wheel: Path, constraints: Path | None) -> None:
    """examples/own-claim, outside the repository, against the installed wheel."""
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    pins = ["-c", constraints.resolve()] if constraints else []
    run(python, "-m", "pip", "install", "--quiet", *pins, f"{wheel}[test]", cwd=work)
    project = work / "own-claim"
    shutil.copytree(ROOT / "examples" / "own-claim", project)
    (project / "model.py").write_text(USER_MODEL)
    probe = "import model, mechclaims; print(model.WHO); print(mechclaims.__file__)"
    imported = run(python, "-c", f"{probe}; from mechclaims import Transformer", cwd=project)
    user_model, package = imported.splitlines()
    if user_model != "the user's own model.py" or str(ROOT) in package:
        fail(f"imports resolve wrongly: model -> {user_model!r}, mechclaims -> {package}")
    run(python, "-m", "pytest", "-p", "no:cacheprovider", cwd=project)
    if not (project / "report" / "index.md").is_file():
        fail("the example ran but wrote no report/index.md")


if __name__ == "__main__":
    sys.exit(main())
