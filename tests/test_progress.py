"""Epoch progress: whole lines off a terminal, a tqdm bar on one, nothing when disabled."""
import io

from hgnn.train.progress import EpochProgress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(progress: EpochProgress, epochs: int, stopped: bool = False) -> None:
    for epoch in range(epochs):
        progress.update(loss=f"{1.0 / (epoch + 1):.4f}")
    progress.close(stopped_early=stopped)


def test_log_file_gets_whole_lines_about_every_tenth_epoch():
    stream = io.StringIO()
    run(EpochProgress("rgcn/x seed 0", 100, stream=stream), 100)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    # the first epoch, then epochs 10, 20, ..., 100
    assert [line.split()[4] for line in lines] == ["1/100"] + [f"{e}/100" for e in range(10, 101, 10)]
    assert lines[-1].startswith("rgcn/x seed 0: epoch 100/100 loss=0.0100 (")


def test_early_stop_and_resume_are_reported():
    stream = io.StringIO()
    run(EpochProgress("m/d seed 1", 50, initial=20, stream=stream), 7, stopped=True)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("m/d seed 1: epoch 21/50")  # the resumed run's first epoch
    assert lines[-1] == "m/d seed 1: stopped early after epoch 27/50"


def test_terminal_gets_a_bar_and_disabled_writes_nothing():
    terminal = FakeTerminal()
    progress = EpochProgress("m/d seed 0", 5, stream=terminal)
    assert progress.bar is not None
    run(progress, 5)
    assert "\r" in terminal.getvalue()
    quiet = FakeTerminal()
    run(EpochProgress("m/d seed 0", 5, disable=True, stream=quiet), 5)
    assert quiet.getvalue() == ""
