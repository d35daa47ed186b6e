"""Every speed measurement of issue 29 in one run, within a time budget, each result written as soon as it is had.

    python benchmarks/speed.py --config-dir .real-configs            # on a GPU, no network: about 8 minutes
    python benchmarks/speed.py --tiny                                # the same code on the offline hub's tiny models

Stages, most important first; a stage whose estimate no longer fits the budget is skipped and says so:

1. `build`: full-size random-weight SD 1.5, SDXL base and Animagine XL (for switching) from the real configs;
2. `bench`: SD 1.5 and SDXL, plain diffusers against `eager`, `auto` and `max`, and switching between two SDXLs;
3. `recompile`: SDXL `max` again in a new process, loading the compiled artifacts the first one saved;
4. `dit`: the 2026 DiT transformers (Z-Image, FLUX.2 klein 4B, Qwen-Image) at 1024 px: eager, compiled by regions,
   and that with the fastest attention backend the machine has (`attention="best"`);
5. `throughput`: images per minute of a 4x4 SDXL grid at batch 1 and the best batch size;
6. `caching`: each step-caching mode's speed-up and quality cost on FLUX.1-schnell (quality is meaningful only with
   real weights and judges in the Hub cache; with random weights the figures are speed only);
7. `profile`: where one SDXL image's time goes (torch.profiler, top operators), printed and saved.

Everything goes to `--out` (default `benchmarks/results`): the bench harness's own JSON and markdown, and
`<date>-speed-<machine>.jsonl`, one line per result as it comes, ending with how long each stage took.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Seconds each stage is expected to take on an H100 / H200 (from the 2026-11-30 H200 run where measured).
ESTIMATE_S = {"build": 70, "bench": 330, "recompile": 40, "dit": 200, "throughput": 90, "caching": 150,
              "profile": 30}  # fmt: skip
TINY_ESTIMATE_S = dict.fromkeys(ESTIMATE_S, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-dir", default=str(ROOT / ".real-configs"), help="the real configs (with 2026/)")
    ap.add_argument("--hub-cache", default=str(ROOT / ".cache" / "bench-hub"), help="where random weights go")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for the whole run (default 8 minutes)")
    ap.add_argument("--stages", default=",".join(ESTIMATE_S), help="comma-separated stages to run")
    ap.add_argument("--tiny", action="store_true", help="the offline hub's tiny models on any device: a dry run")
    args = ap.parse_args(argv)
    return Run(args).go()


class Run:
    def __init__(self, args):
        from helpers.bench.report import machine

        self.args, self.start, self.took = args, time.perf_counter(), {}
        self.machine = machine()
        self.device = self.machine["device"]
        slug = (self.machine["gpu"] or "cpu").lower().replace(" ", "-")
        date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        n, self.log_path = 1, out / f"{date}-speed{'-tiny' if args.tiny else ''}-{slug}.jsonl"
        while self.log_path.exists():
            n += 1
            self.log_path = out / f"{date}-speed{'-tiny' if args.tiny else ''}-{slug}-{n}.jsonl"
        self.estimates = TINY_ESTIMATE_S if args.tiny else ESTIMATE_S
        self.env = {} if args.tiny else {"HF_HUB_CACHE": args.hub_cache, "HF_HUB_OFFLINE": "1"}
        os.environ.update(self.env)
        self.result("machine", self.machine | {"tiny": args.tiny, "budget_s": args.budget})

    def result(self, stage: str, value) -> None:
        """Append one result to the run's JSONL file at once (a run cut short keeps everything before)."""
        line = {"stage": stage, "t_s": round(time.perf_counter() - self.start, 1), "result": value}
        with open(self.log_path, "a") as f:
            f.write(json.dumps(line, default=str) + "\n")
        print(f"[{line['t_s']:7.1f}s] {stage}: {json.dumps(value, default=str)[:300]}", flush=True)

    def go(self) -> int:
        for stage in self.args.stages.split(","):
            left = self.args.budget - (time.perf_counter() - self.start)
            if self.estimates[stage] > left:
                self.result(
                    stage, {"skipped": f"needs about {self.estimates[stage]} s, {left:.0f} s of the budget left"}
                )
                continue
            begin = time.perf_counter()
            try:
                getattr(self, f"stage_{stage}")()
            except Exception as exc:  # one stage failing must not lose the others' figures
                self.result(stage, {"error": f"{type(exc).__name__}: {exc}"})
            self.took[stage] = round(time.perf_counter() - begin, 1)
        self.result("time", {"per_stage_s": self.took, "total_s": round(time.perf_counter() - self.start, 1)})
        print("Where the time went:", ", ".join(f"{k} {v:.0f} s" for k, v in self.took.items()))
        return 0

    # --- the stages ---------------------------------------------------------------------------------------

    def stage_build(self):
        if self.args.tiny:
            return self.result("build", {"models": "the offline hub's tiny models (HF_HUB_CACHE)"})
        from helpers.bench import randomweights

        keys = ["sd15", "sdxl-base", "animagine-xl-3.1"]
        randomweights.build(keys, self.args.config_dir, self.args.hub_cache, device=self.device)
        self.result("build", {"models": keys, "hub_cache": self.args.hub_cache})

    def _bench(self, keys, variants, switch=None, **small):
        from helpers.bench import harness

        report = harness.run(keys, variants=variants, switch=switch, out_dir=self.args.out, log=print,
                             hub_cache=None if self.args.tiny else self.args.hub_cache, **small)  # fmt: skip
        return report

    def _small(self):
        return {"steps": 2, "size": 64, "repeats": 1, "warmup": 0} if self.args.tiny else {"repeats": 2}

    def stage_bench(self):
        variants = ("diffusers", "eager", "max") if self.args.tiny else ("diffusers", "eager", "auto", "max")
        switch = None if self.args.tiny else ["sdxl-base", "animagine-xl-3.1"]
        report = self._bench(["sd15", "sdxl-base"], variants, switch, **self._small())
        self.result("bench", {"files": report["files"], "targets": report["targets"]})

    def stage_recompile(self):
        # A fresh inductor cache folder: only the artifacts `max` saved in the bench stage (in the user's cache
        # folder) can spare this process the compiling, as after a machine whose /tmp did not survive.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
        report = self._bench(["sdxl-base"], ("eager", "max"), **self._small())
        again = {r["variant"]: r for r in report["results"]}
        self.result("recompile", {"files": report["files"], "first_image_s": {v: r.get("first_image_s")
                                  for v, r in again.items()}, "compile_s": [r.get("compile_s") for r in
                                  report["summary"] if r["variant"] == "max"]})  # fmt: skip

    def stage_dit(self):
        from helpers.bench import dit

        tiny = {"z-image-turbo": dict(n_layers=1, n_refiner_layers=1, dim=256, n_heads=2, n_kv_heads=2,
                                      cap_feat_dim=32),
                "flux2-klein-4b": dict(num_layers=1, num_single_layers=1, num_attention_heads=2,
                                       joint_attention_dim=32),
                "qwen-image": dict(num_layers=1, num_attention_heads=2, joint_attention_dim=32)}  # fmt: skip
        for name in dit.CONFIGS:  # eager, compiled by regions, and that with the fastest attention backend here
            for variant, attention in (("eager", "default"), ("regional", "default"), ("regional", "best")):
                if self.args.tiny and variant != "eager" and name != "flux2-klein-4b":
                    continue  # a dry run compiles one model: the code is the same, the CPU is slow at it
                job = {"name": name, "config_dir": self.args.config_dir, "variant": variant, "device": self.device,
                       "attention": attention}  # fmt: skip
                job |= {"steps": 2, "height": 128, "width": 128, "overrides": tiny[name]} if self.args.tiny else {}
                self.result("dit", self._spawn(["-m", "helpers.bench.dit", json.dumps(job)]))

    def _spawn(self, args) -> dict:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": path})  # fmt: skip
        if proc.returncode:
            return {"error": (proc.stderr.strip().splitlines() or ["worker failed"])[-1]}
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def _pipe(self, key):
        from helpers import load_pipeline

        return load_pipeline(key, device=self.device, fast="off")

    def stage_throughput(self):
        from helpers.bench import throughput

        pipe = self._pipe("sdxl-base")
        call = {"num_inference_steps": 2, "height": 64, "width": 64} if self.args.tiny else {"num_inference_steps": 30}
        self.result("throughput", throughput.measure(pipe, batch_sizes=(1, 2) if self.args.tiny else (1, 2, 4), **call))

    def stage_caching(self):
        from helpers import free
        from helpers.bench import cachequality

        free()
        call = {"num_inference_steps": 8, "height": 64, "width": 64} if self.args.tiny else {"num_inference_steps": 28}
        if not self.args.tiny:
            from helpers.bench import randomweights

            randomweights.build(["flux-schnell"], self.args.config_dir, self.args.hub_cache, device=self.device)
        out = cachequality.measure(self._pipe("flux-schnell"), **call)
        self.result("caching", out | {"random_weights": not self.args.tiny and "quality figures mean nothing"})

    def stage_profile(self):
        import torch
        from torch.profiler import ProfilerActivity, profile

        from helpers import free, generate

        free()
        pipe = self._pipe("sdxl-base")
        call = {"num_inference_steps": 2, "height": 64, "width": 64} if self.args.tiny else {"num_inference_steps": 5}
        generate(pipe, "a lighthouse", seed=0, scheduler="default", **call)
        cuda = torch.cuda.is_available()
        acts = [ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * cuda
        with profile(activities=acts) as prof:
            generate(pipe, "a lighthouse", seed=0, scheduler="default", **call)
        table = prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total",
                                          row_limit=15)  # fmt: skip
        print(table)
        path = self.log_path.with_suffix(".profile.txt")
        path.write_text(table)
        self.result("profile", {"file": str(path), "steps": call["num_inference_steps"]})


if __name__ == "__main__":
    sys.exit(main())
