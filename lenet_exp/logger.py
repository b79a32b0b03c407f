"""TensorBoard logging of one run: scalar curves, the shape table as text, and an HParams entry.

Event files go straight into the run folder, so `tensorboard --logdir multirun/<date>/<time>` shows
each sweep job as one run named after its folder.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from contextlib import nullcontext, suppress
from pathlib import Path

from lenet_exp.files import atomic_write
from lenet_exp.signals import signals_deferred

# Scalar tags, one place for all of them.
TRAIN_LOSS, TRAIN_ACC, TEST_ACC = "train/loss", "train/acc", "test/acc"
BEST_TEST_ACC, LR, SPEED = "test/best_acc", "train/lr", "train/examples_per_sec"
VAL_ACC, BEST_VAL_ACC = "val/acc", "val/best_acc"


def shown_metrics(split: bool) -> list[str]:
    """The metrics a sweep's HParams views show, first to last: the figure that chose (validation accuracy, with a
    split), then test accuracy, then training's."""
    return [*((VAL_ACC, BEST_VAL_ACC) if split else ()), TEST_ACC, BEST_TEST_ACC, TRAIN_LOSS, TRAIN_ACC, LR, SPEED]


SESSION_SUFFIX = ".hparams"  # the event file holding the run's HParams session, rewritten by each try
FATE = "status"  # the hparam that says how a run ended, in words: completed, pruned at rung 1 of 3, diverged, ...
# a run's status (metrics.json) as its HParams session ends: only completed succeeded; interrupted and pruned may go on
# (unknown); diverged and failed failed
SESSION_STATUS = {"completed": "STATUS_SUCCESS", "interrupted": "STATUS_UNKNOWN", "pruned": "STATUS_UNKNOWN"}


class RunLogger:
    """Writes one run's events; `resume_step` drops any point at or after it left by an earlier try."""

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        # here, not at the top: the command line answers without torch
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir, self._session = run_dir, []
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=resume_step)
        if threading.excepthook is not _quiet_writer_thread:
            threading.excepthook = _quiet_writer_thread

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def text(self, tag: str, lines: list[str]) -> None:
        # Markdown: indent four spaces so TensorBoard shows the lines as a code block.
        self.writer.add_text(tag, "\n".join("    " + line for line in lines), 0)

    def session_start(self, settings: dict[str, float | int | str | bool], metrics: list[str] | None = None) -> None:
        """Register the run for the HParams dashboard: its settings, and its fate (FATE: running, until it ends), as a
        session of the experiment.

        A run alone writes only its session: TensorBoard computes the experiment from all runs in the log folder. A
        sweep's job (`metrics`: the metrics to show, first to last) writes its sweep's experiment too, so that the
        dashboard shows the figure that chose first (val/acc where a split is held out) and its fate beside its keys.
        """
        self._session = [start_summary({**settings, FATE: "running"})]
        if metrics:
            self._session.insert(0, experiment_summary({**settings, FATE: "running"}, metrics))
        write_session(self.run_dir, self._session)

    def session_end(self, status: str, fate: str = "", quietly: bool = False) -> None:
        """Close the run's session with the status metrics.json gives it (SESSION_STATUS) and its fate in words (the
        status where none is given); `quietly` as in close."""
        with suppress(OSError) if quietly else nullcontext():
            self._session = [*with_fate(self._session, fate or status), _session_end(status)]
            write_session(self.run_dir, self._session)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, quietly: bool = False) -> None:
        """Flush and close; `quietly` after an error, when a second one (a full disk) would only hide the first."""
        with suppress(OSError) if quietly else nullcontext():
            self.writer.close()


def _quiet_writer_thread(args, default=threading.excepthook) -> None:
    """A file error in TensorBoard's writer thread comes back to the run at its next write, which records it as the
    run's end: the thread's own traceback would only repeat it, as a traceback."""
    if not (isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread"):
        default(args)


def write_session(run_dir: Path, summaries: list) -> None:
    """The session in an event file of its own, replacing the last try's (TensorBoard keeps the first session info it
    reads in a run, so a resumed run must not leave its earlier one behind). The new file is whole before the old one
    goes, with signals held between: a stop leaves the old session or the new, never none."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    data = io.BytesIO()
    records = RecordWriter(data)
    records.write(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
    for summary in summaries:
        records.write(Event(summary=summary, wall_time=time.time()).SerializeToString())
    old = sorted(run_dir.glob(f"events.out.tfevents.*{SESSION_SUFFIX}"))
    stamp = max([int(time.time()), *(int(p.name.split(".")[3]) + 1 for p in old if p.name.split(".")[3].isdigit())])
    new = run_dir / f"events.out.tfevents.{stamp:010d}.{socket.gethostname()}.{os.getpid()}{SESSION_SUFFIX}"
    with signals_deferred():  # read later than the old ones, so a live TensorBoard reads it too
        atomic_write(new, data.getvalue())
        for path in old:
            path.unlink(missing_ok=True)


def end_session(run_dir: Path, status: str, fate: str = "") -> None:
    """Give a run's HParams session the status its metrics.json now holds, and its fate in words (a search prunes a
    run after it ended: `pruned at rung 1 of 3`); a run without a session keeps none, and one that says so already is
    left as it is."""
    sessions = sorted(run_dir.glob(f"events.out.tfevents.*{SESSION_SUFFIX}"))
    if not sessions:
        return
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata

    end = _session_end(status)
    values = [v for e in EventFileLoader(str(sessions[-1])).Load() for v in e.summary.value]
    kept = [Summary(value=[v]) for v in values if v.tag in (metadata.EXPERIMENT_TAG, metadata.SESSION_START_INFO_TAG)]
    ends = [_status(v) for v in values if v.tag == metadata.SESSION_END_INFO_TAG]
    if any(v.tag == metadata.SESSION_START_INFO_TAG for v in values):
        updated = with_fate(kept, fate or status)
        if ends != [_status(end.value[0])] or updated != kept:
            write_session(run_dir, [*updated, end])


def start_summary(settings: dict):
    """The session's start: its settings as hparams (integers as text, so that TensorBoard shows 0 and 256, not 0.0
    and 256.0)."""
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import SessionStartInfo

    info = SessionStartInfo(start_time_secs=time.time())
    for key, value in settings.items():
        if isinstance(value, bool):
            info.hparams[key].bool_value = value
        elif isinstance(value, float):
            info.hparams[key].number_value = value
        else:
            info.hparams[key].string_value = str(value)
    return _hparams_summary(metadata.SESSION_START_INFO_TAG, session_start_info=info)


def experiment_summary(settings: dict, metrics: list[str]):
    """A sweep's experiment, as each of its jobs writes it: its keys (the job's own, with their types) and its metrics
    in the order given, which TensorBoard's HParams views show first to last."""
    from tensorboard.plugins.hparams import api_pb2, metadata

    kinds = {bool: api_pb2.DATA_TYPE_BOOL, float: api_pb2.DATA_TYPE_FLOAT64}
    hparams = [  # the keys a sweep varies, and its jobs' fates: each differs between the jobs
        api_pb2.HParamInfo(name=k, type=kinds.get(type(v), api_pb2.DATA_TYPE_STRING), differs=True)
        for k, v in settings.items()
    ]
    shown = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in metrics]
    return _hparams_summary(
        metadata.EXPERIMENT_TAG, experiment=api_pb2.Experiment(hparam_infos=hparams, metric_infos=shown)
    )


def with_fate(summaries: list, fate: str) -> list:
    """The session's summaries, its start saying `fate` in the FATE hparam (the others as they are)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    out = []
    for summary in summaries:
        value = summary.value[0]
        if value.tag == metadata.SESSION_START_INFO_TAG:
            data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
            data.session_start_info.hparams[FATE].string_value = fate
            value = Summary.Value(tag=value.tag, metadata=value.metadata)
            value.metadata.plugin_data.content = data.SerializeToString()
            summary = Summary(value=[value])
        out.append(summary)
    return out


def _status(value) -> int:
    from tensorboard.plugins.hparams import metadata

    return metadata.parse_session_end_info_plugin_data(value.metadata.plugin_data.content).status


def _session_end(status: str):
    from tensorboard.plugins.hparams import api_pb2, metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import SessionEndInfo

    code = api_pb2.Status.Value(SESSION_STATUS.get(status, "STATUS_FAILURE"))
    return _hparams_summary(
        metadata.SESSION_END_INFO_TAG, session_end_info=SessionEndInfo(status=code, end_time_secs=time.time())
    )


def _hparams_summary(tag: str, **data):
    """A Summary holding the hparams plugin's data (session start or end), as TensorBoard's plugin reads it."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    content = HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **data).SerializeToString()
    plugin = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content))
    return Summary(value=[Summary.Value(tag=tag, metadata=plugin)])
