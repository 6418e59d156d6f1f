"""The docs site's notebook pre-processing passes without Quarto: `nbdev_proc_nbs` (the step of `nbdev_docs` that runs
every `show_doc` cell and every cell it takes for an import) on all notebooks, and the settings the site relies on."""
import configparser, shutil, subprocess, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
bindir = Path(sys.executable).parent

def test_nbdev_proc_nbs():
    "Pre-process every notebook as `nbdev_docs` would; a show_doc cell or import cell that raises fails it."
    proc = root / '_proc'
    shutil.rmtree(proc, ignore_errors=True)
    try:
        r = subprocess.run([str(bindir/'nbdev_proc_nbs')], cwd=root, capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, f'nbdev_proc_nbs failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}'
        made = {p.name for p in proc.glob('*.ipynb')}
        assert made == {p.name for p in (root/'nbs').glob('*.ipynb')}, made
    finally: shutil.rmtree(proc, ignore_errors=True)

def test_site_settings():
    "The hand-written milestone sidebar is kept (custom_sidebar) and lists every notebook."
    cfg = configparser.ConfigParser(); cfg.read(root/'settings.ini')
    assert cfg['DEFAULT']['custom_sidebar'] == 'True'
    sidebar = (root/'nbs'/'sidebar.yml').read_text()
    missing = [p.name for p in (root/'nbs').glob('[0-9]*.ipynb') if p.name not in sidebar]
    assert not missing, f'notebooks missing from nbs/sidebar.yml: {missing}'
