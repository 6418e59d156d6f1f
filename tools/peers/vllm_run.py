"""vLLM's CPU build on folovllm's two workloads, with the vLLM venv's python (tools/peers/compare.py runs it).

Reads the workload file compare.py writes (the house workload's prompt ids and output lengths, the batch-1 prompt)
and prints one JSON line: the house workload's seconds and the batch-1 decode rate, (n - 1) / (t(n) - t(1)).
"""
import argparse, json, statistics, time


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--model', required=True, help='a Hugging Face folder (config.json, model.safetensors, tokenizer)')
    p.add_argument('--work', required=True, help="compare.py's workload file")
    p.add_argument('--runs', type=int, default=3)
    a = p.parse_args()
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    w = json.load(open(a.work))
    llm = LLM(model=a.model, dtype='float32', max_model_len=w['max_model_len'], seed=0)

    def run(prompts, lengths):
        params = [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True) for n in lengths]
        t = time.perf_counter()
        outs = llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompts], params, use_tqdm=False)
        dt = time.perf_counter() - t
        assert [len(o.outputs[0].token_ids) for o in outs] == list(lengths), 'vLLM did not produce the asked lengths'
        return dt

    house = w['house']
    run([ids for ids, _ in house[:4]], [8] * 4)                                    # warm-up
    house_s = run([ids for ids, _ in house], [n for _, n in house])
    one, n = w['batch1'], w['output_len']
    run([one], [4])
    rates = [(n - 1) / (run([one], [n]) - run([one], [1])) for _ in range(a.runs)]
    print(json.dumps({'house_seconds': house_s, 'batch1_tok_s': statistics.median(rates), 'batch1_runs': rates}))


if __name__ == '__main__':      # vLLM starts worker processes that import this file
    main()
