"""The toy paths in PyTorch: ``python -m bench.frameworks.torch.toy <job.json> <out.json>``.

Every method with ``torch.optim``'s optimizer (native) and with the tutorial's formulas
(``ReferenceOptimizer``), on the problems ``bench.toy`` sends, in float64.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bench.frameworks.torch.reference import ReferenceOptimizer
from bench.optimizers import METHODS, get_rule, native_kwargs
from bench.toy import IMPLS, sampled_loss


def paths(job: Mapping[str, Any]) -> dict[str, Any]:
    """``{"version", "paths": {"<problem>|<method>|<impl>": [θ per step]}, "notes"}``."""
    out: dict[str, Any] = {"version": torch.__version__, "paths": {}, "notes": []}
    for prob in job["problems"]:
        samples = torch.tensor(prob["samples"], dtype=torch.float64)
        for method, hp in prob["hp"].items():
            rule = METHODS[method].rule
            for impl in IMPLS:
                theta = torch.nn.Parameter(torch.tensor(prob["start"], dtype=torch.float64))
                if impl == "native":
                    cls, kwargs = native_kwargs(rule, "torch", hp)
                    opt = getattr(torch.optim, cls)([theta], **kwargs)
                else:
                    opt = ReferenceOptimizer([theta], rule=get_rule(rule), hp=hp)
                path = [theta.detach().tolist()]
                for idx in prob["batches"][method]:
                    opt.zero_grad()
                    sampled_loss(prob["name"], theta, samples[idx], lambda t, *a: t.mean(*a)).backward()
                    opt.step()
                    path.append(theta.detach().tolist())
                out["paths"][f"{prob['name']}|{method}|{impl}"] = path
    return out


if __name__ == "__main__":
    Path(sys.argv[2]).write_text(json.dumps(paths(json.loads(Path(sys.argv[1]).read_text()))))
