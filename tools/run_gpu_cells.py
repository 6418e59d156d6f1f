"""Run a notebook's `#| gpu` cells on a CUDA machine and bring their outputs back into the notebook.

The lent GPU machine has PyTorch but no Jupyter, so this runs the cells itself, in order, in one namespace, with plain
`exec`, capturing each cell's printed output and matplotlib figures:

    PYTHONPATH=. python3 tools/run_gpu_cells.py run nbs/40_attention.ipynb $OUT/gpu40.json    # on the GPU machine
    python tools/run_gpu_cells.py inject nbs/40_attention.ipynb gpu40.json                    # here: outputs into the cells

Only cells flagged `#| gpu` run, so each notebook's GPU cells must be self-contained (import what they use).
A failing cell's traceback is recorded as its output, and the run goes on with the next cell.
"""
import base64, contextlib, io, json, sys, traceback


def is_gpu_cell(cell) -> bool:
    src = ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']
    return cell['cell_type'] == 'code' and any(l.strip().replace(' ', '') == '#|gpu' for l in src.splitlines())


def source(cell) -> str:
    return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']


def run(nb_path: str, out_path: str):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    nb = json.load(open(nb_path))
    ns, results = {'__name__': '__main__'}, {}
    for i, cell in enumerate(nb['cells']):
        if not is_gpu_cell(cell): continue
        buf, outputs, ok = io.StringIO(), [], True
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try: exec(compile(source(cell), f'<cell {i}>', 'exec'), ns)
            except Exception: ok = False; traceback.print_exc()
        if buf.getvalue(): outputs.append({'output_type': 'stream', 'name': 'stdout', 'text': buf.getvalue()})
        for num in plt.get_fignums():
            png = io.BytesIO(); plt.figure(num).savefig(png, format='png', bbox_inches='tight'); plt.close(num)
            outputs.append({'output_type': 'display_data', 'metadata': {},
                            'data': {'image/png': base64.b64encode(png.getvalue()).decode(), 'text/plain': ['<Figure>']}})
        results[str(i)] = {'id': cell.get('id'), 'source': source(cell), 'outputs': outputs}
        sys.__stdout__.write(f'--- cell {i} ({"ok" if ok else "FAILED"})\n{buf.getvalue()[-3000:]}\n'); sys.__stdout__.flush()
        json.dump(results, open(out_path, 'w'))


def inject(nb_path: str, results_path: str):
    nb, results = json.load(open(nb_path)), json.load(open(results_path))
    for i, r in results.items():
        cell = nb['cells'][int(i)]
        if source(cell) != r['source']: sys.exit(f'cell {i} changed since the GPU run: run it again')
        cell['outputs'] = r['outputs']
    json.dump(nb, open(nb_path, 'w'), indent=1, ensure_ascii=False); open(nb_path, 'a').write('\n')
    print(f'{len(results)} GPU cells updated in {nb_path}')


if __name__ == '__main__':
    {'run': run, 'inject': inject}[sys.argv[1]](*sys.argv[2:])
