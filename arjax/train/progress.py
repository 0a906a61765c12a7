"""Progress of a training loop: a live bar on a terminal or in a notebook, sparse plain lines in a log.

A ``tqdm`` bar redraws itself with carriage returns, which a terminal overwrites and a log file
(CI, ``nohup``, a batch job) keeps, one redraw after another. When the output is neither a
terminal nor a notebook, ``Progress`` writes a plain line instead, at most once every ``interval``
seconds and when the run ends, so that a long run leaves a log of a few readable lines.
"""

import sys
import time

import tqdm.auto
import tqdm.autonotebook
import tqdm.std

__all__ = ["Progress"]


class Progress:
    """Report ``done`` of ``total`` steps and a status text after each chunk of a run.

    Args:
        total: the run's last step.
        initial: the step it starts from (a resumed run starts past 0).
        enabled: False shows nothing.
        file: where to write (default ``sys.stderr``); a bar when it is a terminal or in a
            notebook, plain lines otherwise.
        interval: the least number of seconds between two plain lines.

    Example:
        >>> import io
        >>> log = io.StringIO()
        >>> progress = Progress(100, initial=0, enabled=True, file=log)
        >>> for done in (25, 50, 75, 100):
        ...     progress.update(done, f"loss={1 / done:.2f}")
        >>> progress.close()
        >>> print(log.getvalue().strip())   # the first chunk and the end: the chunks took < 30 s
        step 25/100 loss=0.04
        step 100/100 loss=0.01
    """

    def __init__(self, total: int, *, initial: int, enabled: bool, file=None, interval: float = 30.0):
        self.file = sys.stderr if file is None else file
        self.total, self.enabled, self.interval, self.done = total, enabled, interval, initial
        self.unprinted: str | None = None
        self.printed_at = -float("inf")
        live = tqdm.autonotebook.tqdm is not tqdm.std.tqdm or getattr(self.file, "isatty", lambda: False)()
        self.bar = None
        if live and enabled:
            self.bar = tqdm.auto.tqdm(total=total, initial=initial, file=self.file, dynamic_ncols=True)

    def update(self, done: int, status: str) -> None:
        """Record that ``done`` steps are finished; ``status`` describes the latest one."""
        if self.bar is not None:
            self.bar.update(done - self.done)
            self.bar.set_postfix_str(status)
        elif self.enabled:
            self.unprinted = f"step {done}/{self.total} {status}"
            if done >= self.total or time.monotonic() - self.printed_at >= self.interval:
                self._print()
        self.done = done

    def close(self) -> None:
        """Close the bar, or print the last status if it has not been printed yet."""
        if self.bar is not None:
            self.bar.close()
        elif self.unprinted is not None:
            self._print()

    def _print(self) -> None:
        print(self.unprinted, file=self.file, flush=True)
        self.unprinted, self.printed_at = None, time.monotonic()
