"""``figures.png``: reliability diagram and risk-coverage curve of every method's first seed, side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lightning_skd.compare.sweep import Sweep


def write_figures(path: Path, sweep: Sweep) -> bool:
    """Reliability diagram (top) and risk-coverage curve (bottom) of each method's first seed, side by side.

    Drawn from the runs' ``test_predictions.pt`` (class probabilities, saved only by models that predict them).

    Returns:
        Whether ``path`` was written (not when no run saved class probabilities, e.g. a translation sweep).

    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from lightning_skd.metrics.plots import reliability_diagram, risk_coverage_curve

    def render(figure: Figure) -> np.ndarray:
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())

    seed = sweep.seeds[0]
    panels = []
    for method in sweep.methods:
        predictions = sweep.run_dir(method, seed) / "test_predictions.pt"
        if not predictions.is_file():  # no class probabilities, or a run of an earlier sweep where it was not seed 1
            continue
        saved = torch.load(predictions)
        title = f"{method.name} (seed {seed})"
        panels.append(
            (
                render(reliability_diagram(saved["probs"], saved["target"], title=title)),
                render(risk_coverage_curve(saved["probs"], saved["target"], title=title)),
            )
        )
    if not panels:
        return False
    grid = Figure(figsize=(5 * len(panels), 10), layout="constrained")
    axes = grid.subplots(2, len(panels), squeeze=False, height_ratios=(6, 4))
    for column, images in enumerate(panels):
        for row, image in enumerate(images):
            axes[row][column].imshow(image)
            axes[row][column].set_axis_off()
    grid.savefig(path, dpi=100)
    return True
