"""The Hydra callback of the training-side studies (``hydra.callbacks.xqg_train_study`` in
``conf/study/train_*.yaml``): at the end of the multirun, the study's report over every job's cell
(:mod:`xqg.tasks.studies.cells`) in ``<sweep dir>/study/``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from xqg.tasks.studies import train_alignment, train_scaling
from xqg.tasks.studies.cells import REPORT_DIR, Cell, load_cells

log = logging.getLogger(__name__)

ReportFn = Callable[[list[Cell], Path, Mapping[str, Any], Mapping[str, Any]], Path]
#: study name -> its report writer ``(cells, out_dir, logger node, config) -> report.md``
REPORTS: dict[str, ReportFn] = {
    train_alignment.STUDY: train_alignment.write_report,
    train_scaling.STUDY: train_scaling.write_report,
}


class TrainStudyCallback(Callback):
    """Writes the report over the sweep's cells when the multirun ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        study = str(OmegaConf.select(config, "study.name"))
        if study not in REPORTS:
            log.warning("study %r has no multirun report", study)
            return
        cells = load_cells(sweep_dir, study)
        if not cells:
            log.warning("no study cells in %s: no study report", sweep_dir)
            return
        logger = OmegaConf.to_container(config.logger, resolve=True) if "logger" in config else {}
        plain = OmegaConf.to_container(config, resolve=False)
        assert isinstance(logger, dict) and isinstance(plain, dict)
        plain.pop("hydra", None)
        path = REPORTS[study](cells, sweep_dir / REPORT_DIR, logger, plain)
        print(f"\n{study} study report ({len(cells)} jobs): {path}")
