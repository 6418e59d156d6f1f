"Print the text outputs of a notebook's code cells (for reviewing an executed notebook)."
import json, sys
for path in sys.argv[1:]:
    for i, c in enumerate(json.load(open(path))['cells']):
        if c['cell_type'] != 'code': continue
        for o in c.get('outputs', []):
            if o['output_type'] == 'stream': print(f'[{i}]', ''.join(o['text'])[:2000].rstrip())
            elif o['output_type'] == 'error': print(f'[{i}] ERROR', o['ename'], o['evalue'][:500])
            elif 'data' in o:
                d = o['data']
                print(f'[{i}]', '<image>' if 'image/png' in d else ''.join(d.get('text/plain', ''))[:500])
