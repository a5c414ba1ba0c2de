"""LazyModule under threads: a server's first requests arrive together."""

from __future__ import annotations

import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

from modelkeep.lazy import LazyModule


def test_threads_reading_a_lazy_module_while_it_imports_wait_for_the_whole_module(
    tmp_path: Path,
) -> None:
    """A module is in sys.modules from the start of its import: a second thread must wait
    for the import to finish, not read a half-made module (AttributeError)."""
    name = f"slow_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        "import time\ntime.sleep(0.3)\n\n\ndef answer():\n    return 42\n", "utf-8"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        lazy = LazyModule(name)
        threads = 16
        start = Barrier(threads)

        def read(i: int) -> int:
            start.wait()
            time.sleep(i * 0.015)  # most arrive while the first one's import runs
            return int(lazy.answer())

        with ThreadPoolExecutor(threads) as pool:
            assert list(pool.map(read, range(threads))) == [42] * threads
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)
