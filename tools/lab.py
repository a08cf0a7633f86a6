"""Start JupyterLab on the course's notebooks: `make lab` (extra arguments: make lab LAB_ARGS="...").

Works where a plain `jupyter lab` stops: as root (containers, cloud VMs), where jupyter_server exits
unless given --allow-root, and on a machine with no display, where there is no browser to open, so
it only prints the URL to open (with its token) from another machine's browser.
"""
import os
import shutil
import sys
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def has_display(environ, platform):
    """True where a browser window can open: macOS and Windows always, elsewhere X11 or Wayland."""
    return platform in ("darwin", "win32") or bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


def lab_arguments(extra, euid, environ, platform):
    """The arguments for `jupyter lab`: the notebooks folder, then the flags this machine needs, then `extra`."""
    arguments = ["lab", f"--notebook-dir={NOTEBOOKS}"]
    if euid == 0:
        arguments.append("--allow-root")
    if not has_display(environ, platform):
        arguments.append("--no-browser")
    return arguments + list(extra)


def main():
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or shutil.which("jupyter")
    if jupyter is None:
        sys.exit("jupyter is not installed in this environment: run `make lab`, which installs it first")
    euid = os.geteuid() if hasattr(os, "geteuid") else None
    arguments = lab_arguments(sys.argv[1:], euid, os.environ, sys.platform)
    if "--no-browser" in arguments:
        print("No display here: open the http://127.0.0.1:... URL printed below (token included) in a browser. "
              "From another machine, run `make lab LAB_ARGS=\"--ip=0.0.0.0\"` and use this machine's address.",
              flush=True)
    os.execv(jupyter, [jupyter, *arguments])


if __name__ == "__main__":
    main()
