"""Every notebook's tests, run by nbdev_test one notebook at a time (cells flagged gpu/slow/notest skipped),
and every generated module imported on its own in a fresh interpreter."""
import subprocess, sys
from pathlib import Path
import pytest

root = Path(__file__).resolve().parent.parent
bindir = Path(sys.executable).parent
notebooks = sorted(p.name for p in (root/'nbs').glob('*.ipynb'))
modules = sorted('.'.join(p.relative_to(root/'folovllm').with_suffix('').parts) for p in (root/'folovllm').rglob('*.py')
                 if not p.stem.startswith('_'))

@pytest.mark.parametrize('nb', notebooks)
def test_notebook(nb):
    r = subprocess.run([str(bindir/'nbdev_test'), '--path', f'nbs/{nb}', '--n_workers', '0'],
                       cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, f'{nb} failed:\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}'

@pytest.mark.parametrize('mod', modules)
def test_module_imports_alone(mod):
    r = subprocess.run([sys.executable, '-c', f'import folovllm.{mod}'], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
