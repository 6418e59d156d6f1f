"""Fail if `nbdev_clean`, `nbdev_export` or the README build change any file: notebooks must be committed
clean, and `folovllm/` and README.md must be exactly what the notebooks generate."""
import hashlib, subprocess, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
bindir = Path(sys.executable).parent

def state():
    "Hash of the working tree's status and diff, so any change made by the tools shows."
    out = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=all'], cwd=root, capture_output=True, text=True).stdout
    diff = subprocess.run(['git', 'diff'], cwd=root, capture_output=True, text=True).stdout
    return hashlib.md5((out + diff).encode()).hexdigest(), out

def main():
    before, _ = state()
    for cmd in ([str(bindir/'nbdev_clean')], [str(bindir/'nbdev_export')], [sys.executable, 'tools/make_readme.py']):
        subprocess.run(cmd, cwd=root, check=True)
    after, status = state()
    if before != after:
        print("check_sync: FAILED: nbdev_clean / nbdev_export / make_readme changed files; "
              "run `make export` (and tools/make_readme.py) and commit the result.\n" + status, file=sys.stderr)
        subprocess.run(['git', '--no-pager', 'diff', '--stat'], cwd=root)
        sys.exit(1)
    print("check_sync: notebooks clean, folovllm/ and README.md in sync")

if __name__ == '__main__': main()
