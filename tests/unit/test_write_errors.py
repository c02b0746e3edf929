"""Writes that fail (a full disk, a file-size limit) are an OSError naming the errno and the file, whatever
library writes: the offline job's error message names the file from it.

/dev/full answers every write with ENOSPC (a full disk without a mount); numpy ignores that device's errors,
so its writes are checked against RLIMIT_FSIZE in a child process."""

from __future__ import annotations

import errno
import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from models.indexes.faiss_index import write_index

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_faiss_index_written_to_a_full_disk_is_an_oserror_naming_the_file():
    index = faiss.IndexFlatIP(8)
    index.add(np.ones((5000, 8), dtype=np.float32))  # more than one buffered write
    with pytest.raises(OSError) as e:
        write_index(index, Path("/dev/full"))
    assert e.value.errno == errno.ENOSPC and e.value.filename == "/dev/full"
    assert e.value.strerror == "No space left on device"


CHILD = """
import json, sys
import numpy as np
from pathlib import Path
from models.artifact.store import save_npy, save_npz
out = {}
for name, save in (("npy", lambda p: save_npy(p, np.ones(100_000))), ("npz", lambda p: save_npz(p, a=np.ones(100_000)))):
    path = Path(sys.argv[1]) / f"a.{name}"
    try:
        save(path)
        out[name] = None
    except OSError as e:
        out[name] = [e.errno, e.filename]
print(json.dumps(out))
"""


def test_numpy_writes_over_the_file_size_limit_name_the_file(tmp_path):
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))

    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, preexec_fn=limit, check=True
    )
    out = json.loads(done.stdout)
    assert out["npy"] is not None and out["npy"][1] == str(tmp_path / "a.npy"), out
    assert out["npz"] is not None and out["npz"][1] == str(tmp_path / "a.npz"), out
