"""llama.cpp's server on folovllm's two workloads (tools/peers/compare.py runs it; standard library only).

Starts `llama-server` on a GGUF file, sends the house workload as concurrent /completion requests (token ids,
`n_predict` = the output length, `ignore_eos`, greedy, no prompt cache) to a server with one slot per request, and
the batch-1 prompt to a server with one slot, where the rate is the server's own `predicted_per_second`.
Prints one JSON line.
"""
import argparse, json, statistics, subprocess, threading, time, urllib.request
from pathlib import Path


def post(port, body):
    req = urllib.request.Request(f'http://127.0.0.1:{port}/completion', json.dumps(body).encode(), {'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=3600) as r: return json.loads(r.read())


class Server:
    def __init__(self, binary, gguf, slots, ctx_per_slot, threads, port):
        self.port = port
        self.proc = subprocess.Popen([binary, '-m', gguf, '-t', str(threads), '-tb', str(threads), '-np', str(slots),
                                      '-c', str(slots * ctx_per_slot), '--port', str(port), '--host', '127.0.0.1', '-ngl', '0'],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                with urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=1) as r:
                    if r.status == 200: return
            except Exception: time.sleep(0.2)
        raise RuntimeError('llama-server did not start')

    def close(self): self.proc.terminate(); self.proc.wait()


def completion(port, ids, n):
    out = post(port, {'prompt': ids, 'n_predict': n, 'ignore_eos': True, 'temperature': 0, 'cache_prompt': False})
    assert out['tokens_predicted'] == n, (out['tokens_predicted'], n)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--bin', required=True, help='the folder with llama-server')
    p.add_argument('--gguf', required=True)
    p.add_argument('--work', required=True, help="compare.py's workload file")
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--runs', type=int, default=3)
    p.add_argument('--port', type=int, default=8391)
    a = p.parse_args()
    w = json.load(open(a.work))
    server = str(Path(a.bin) / 'llama-server')
    house = w['house']
    s = Server(server, a.gguf, len(house), w['max_model_len'], a.threads, a.port)
    try:
        for ids, _ in house[:4]: completion(a.port, ids, 8)                        # warm-up
        errors = []
        def one(ids, n):
            try: completion(a.port, ids, n)
            except Exception as e: errors.append(repr(e))
        threads = [threading.Thread(target=one, args=(ids, n)) for ids, n in house]
        t = time.perf_counter()
        for th in threads: th.start()
        for th in threads: th.join()
        house_s = time.perf_counter() - t
        if errors: raise RuntimeError(f'{len(errors)} house requests failed: {errors[:3]}')
    finally: s.close()
    s = Server(server, a.gguf, 1, w['max_model_len'], a.threads, a.port)
    try:
        completion(a.port, w['batch1'], 4)
        rates = [completion(a.port, w['batch1'], w['output_len'])['timings']['predicted_per_second'] for _ in range(a.runs)]
    finally: s.close()
    print(json.dumps({'house_seconds': house_s, 'batch1_tok_s': statistics.median(rates), 'batch1_runs': rates}))


if __name__ == '__main__':
    main()
