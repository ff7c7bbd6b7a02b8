"""``agora-eval``: score the configured model's judges, a reward model and a society against
external ground truth (HHH, MoralChoice). Same config as ``agora``; outputs go to
``outputs/eval/<timestamp>/`` (``eval.json``, ``eval.md``, ``eval_items.parquet``, plots)."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from agents.llm.base import BackendError
from scenarios.dilemma import InputError
from sim.cli import fail, os_error_line, run_hydra, typed_config  # also registers the config schema


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def _main(dcfg: DictConfig) -> None:
    cfg = typed_config(dcfg)
    out = Path(HydraConfig.get().runtime.output_dir)
    from alignment.evaluate import evaluate, report_lines
    from sim.run import make_backend
    from sim.store import atomic_write_bytes

    try:
        summary = evaluate(cfg, make_backend(cfg.llm), out)
    except (InputError, BackendError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_error_line(exc))
    text = "\n".join(report_lines(summary))
    atomic_write_bytes(out / "eval.md", (text + "\n").encode())
    print(f"agora-eval: {', '.join(summary['suites'])} -> {out}\n{text}")


def main() -> None:
    run_hydra(_main)


if __name__ == "__main__":
    main()
