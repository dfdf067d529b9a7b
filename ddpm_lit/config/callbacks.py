"""Hydra's callbacks of the commands (``hydra.callbacks`` in conf/hydra/): what Hydra's config
holds, turned into plain paths for the layers below."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ddpm_lit.io import only_one_at_a_time
from ddpm_lit.runs import PAGE

log = logging.getLogger(__name__)


class SweepPage(Callback):
    """The sweep page (``<sweep dir>/page.html``) when a multirun ends (conf/hydra/train.yaml).

    Processes that share a sweep dir (an Optuna study in a storage) write it one at a time: a
    page takes seconds, and without the lock one that read the folder before another process's
    last trial ended could be the one written last."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from ddpm_lit.reporting.pages import write_sweep_page  # jinja2 and vl-convert: for the multirun's end only

        sweep = Path(config.hydra.sweep.dir)
        try:
            with only_one_at_a_time(sweep / PAGE, lambda: log.info("another process is writing %s; waiting", sweep / PAGE)):
                log.info("sweep page: %s", write_sweep_page(sweep))
        except Exception as err:  # noqa: BLE001 - the jobs ran; the page can be written later
            log.warning("no %s written for %s: %s (python -m ddpm_lit.summarize dirs=%s html=true)", PAGE, sweep, err, sweep)
