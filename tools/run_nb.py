"""Execute notebooks in place and save their outputs, skipping cells flagged with a test flag
(`#| gpu`, `#| slow`, `#| notest`) unless that flag is passed with --flags. A skipped cell keeps the
outputs it had, so numbers recorded on a GPU machine or by a slow benchmark stay in the notebook.

    python tools/run_nb.py nbs/10_model.ipynb [--flags slow] [--timeout 1800] [--cells 57,58]

`--cells` also runs the flagged code cells with those indices (0-based, among all cells), for a self-contained
slow cell that can be measured on its own.
"""
import argparse, os, re, time
from pathlib import Path
import nbformat
from nbconvert.preprocessors import ExecutePreprocessor

SKIP = {'notest', 'gpu', 'slow', 'eval:false'}

def cell_flags(src):
    "The cell's flag directives (`#| slow`), plus 'eval:false' for cells nbdev never runs (`#| eval: false`)."
    flags = {m.group(1) for m in re.finditer(r'^#\|\s*(\w+)\s*$', src, re.M)}
    if re.search(r'^#\|\s*eval:\s*false\s*$', src, re.M | re.I): flags.add('eval:false')
    return flags

class FlaggedExecutePreprocessor(ExecutePreprocessor):
    "Run every code cell except those whose flags are in `skip`."
    skip, also = set(), set()
    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == 'code' and cell_flags(cell.source) & self.skip and index not in self.also: return cell, resources
        return super().preprocess_cell(cell, resources, index)

# tqdm's "IProgress not found" note (ipywidgets is not a dependency) says nothing about the notebook and prints this
# machine's site-packages path: the kernels this script starts inherit a filter for it.
os.environ.setdefault('PYTHONWARNINGS', 'ignore:IProgress not found')

def run(path, flags=(), timeout=1800, cells=()):
    nb = nbformat.read(path, as_version=4)
    ep = FlaggedExecutePreprocessor(timeout=timeout, kernel_name='python3')
    ep.skip, ep.also = SKIP - set(flags), set(cells)
    t0 = time.time()
    ep.preprocess(nb, {'metadata': {'path': str(Path(path).parent)}})
    nbformat.write(nb, path)
    print(f'{path}: executed in {time.time()-t0:.1f}s (skipped flags: {sorted(ep.skip)})')
    slowest = sorted(((cell_seconds(c), i) for i, c in enumerate(nb.cells) if c.cell_type == 'code'), reverse=True)[:4]
    print('  slowest cells: ' + ', '.join(f'[{i}] {s:.1f}s' for s, i in slowest if s > 0.5))

def cell_seconds(cell) -> float:
    "Execution time nbclient recorded in the cell's metadata (0 if none)."
    from datetime import datetime
    ex = cell.get('metadata', {}).get('execution', {})
    a, b = ex.get('iopub.execute_input'), ex.get('shell.execute_reply')
    if not (a and b): return 0.0
    return (datetime.fromisoformat(b.replace('Z', '+00:00')) - datetime.fromisoformat(a.replace('Z', '+00:00'))).total_seconds()

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('paths', nargs='+')
    ap.add_argument('--flags', default='', help='space-separated flags to run anyway, e.g. "slow"')
    ap.add_argument('--timeout', type=int, default=1800)
    ap.add_argument('--cells', default='', help='comma-separated indices of flagged cells to run anyway')
    a = ap.parse_args()
    for p in a.paths: run(p, a.flags.split(), a.timeout, [int(c) for c in a.cells.split(',') if c.strip()])
