"""Screenshot of the schedule card in TensorBoard, from a real run (the docs' `docs/assets/tensorboard_schedule.png`).

    python scripts/tensorboard_screenshot.py                       # writes docs/assets/tensorboard_schedule.png
    python scripts/tensorboard_screenshot.py --out /tmp/card.png --keep /tmp/card-run

Two tiny Trainer runs (the tests' tiny Llama on the sonnets, CPU, about a minute on two cores): a plain ``linear``
run with `GradNormRecorderCallback` records the gradient norms, then a ``linear_refined`` run refined from them
reports to TensorBoard. Its log folder is served by ``tensorboard`` on localhost and a headless Chromium takes two
screenshots, the IMAGES dashboard (the picture ``hf_lrschedule/schedule``) and the TEXT dashboard (the summary
``hf_lrschedule/summary``), both filtered to ``hf_lrschedule``; the output stacks the two, unretouched.

The refined run uses ``tolerance=1.0`` (refinement with no band around linear decay): the tiny model's norms vary by
less than the default band of 2x, so with the defaults the card would show plain linear decay.

Needs the ``tensorboard`` package and a Chromium (Debian: ``apt-get install chromium``; ``--chromium`` names another
binary). Nothing is fetched from the network.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts")]  # tiny.py (the tests' tiny model), recipe_data.py

# the two dashboards, filtered to the library's tags, and the window height that shows their first card
DASHBOARDS = (("images", 560), ("text", 640))
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def train(workdir: Path, steps: int, learning_rate: float) -> Path:
    """The recording run, then the refined run reporting to TensorBoard; returns the refined run's log folder."""
    from tiny import tiny_trainer

    from hf_lrschedule import GradNormRecorderCallback

    common = dict(max_steps=steps, logging_steps=1, learning_rate=learning_rate, log_level="error")
    recording = tiny_trainer(workdir / "recording", lr_scheduler_type="linear", **common)
    GradNormRecorderCallback().attach(recording)
    recording.train()
    refined = tiny_trainer(
        workdir / "refined", report_to="tensorboard", lr_scheduler_type="linear_refined",
        lr_scheduler_kwargs={"grad_norms": str(workdir / "recording"), "tolerance": 1.0}, **common,
    )
    GradNormRecorderCallback().attach(refined)
    refined.train()
    return workdir / "refined" / "runs"  # TensorBoardCallback's folder: <output_dir>/runs/<date>_<host>


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_tags(url: str, timeout: float) -> None:
    """Until TensorBoard serves the schedule picture and summary (it loads the event files in the background)."""
    wanted = {"images": "hf_lrschedule/schedule", "text": "hf_lrschedule/summary/text_summary"}
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = []
            for plugin, tag in wanted.items():
                with urllib.request.urlopen(f"{url}/data/plugin/{plugin}/tags", timeout=5) as response:
                    tags = json.load(response)
                found.append(any(tag in str(run_tags) for run_tags in tags.values()))
            if all(found):
                return
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise TimeoutError(f"TensorBoard at {url} did not serve the hf_lrschedule tags within {timeout:.0f} s")
        time.sleep(1)


def screenshot(browser: str, url: str, path: Path, height: int, profile: Path) -> None:
    command = [
        browser, "--headless", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
        f"--window-size=1400,{height}", "--virtual-time-budget=20000", f"--screenshot={path}", url,
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    if not path.is_file():
        raise RuntimeError(f"{browser} wrote no screenshot to {path}")


def stack(parts: list[Path], out: Path) -> None:
    from PIL import Image

    images = [Image.open(part).convert("RGB") for part in parts]
    sheet = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    top = 0
    for image in images:
        sheet.paste(image, (0, top))
        top += image.height
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    sheet.save(tmp, format="PNG", optimize=True)
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "assets" / "tensorboard_schedule.png")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps of each tiny run")
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--chromium", help=f"the browser binary (default: the first of {', '.join(BROWSERS)})")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for TensorBoard")
    args = parser.parse_args(argv)
    browser = args.chromium or next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None or not shutil.which(browser):
        print(f"tensorboard_screenshot: error: no browser found (tried {browser or ', '.join(BROWSERS)}); "
              "install Chromium (apt-get install chromium) or pass --chromium", file=sys.stderr)
        return 2
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="hf_lrschedule-tensorboard-"))
    workdir.mkdir(parents=True, exist_ok=True)
    server = None
    try:
        logdir = train(workdir, args.steps, args.learning_rate)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
             "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_tags(url, args.timeout)
        parts = []
        for dashboard, height in DASHBOARDS:
            part = workdir / f"{dashboard}.png"
            screenshot(browser, f"{url}/?darkMode=false#{dashboard}&tagFilter=hf_lrschedule", part, height,
                       workdir / "chromium-profile")
            parts.append(part)
        stack(parts, args.out)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
