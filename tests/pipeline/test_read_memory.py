"""Reading a split holds about a block, whatever the split's size: the driver's part opening (row counts, names)
and a read task's blocks, measured from the kernel's high-water mark of a process that does only that."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import datasets_fixtures as fx

READ_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
from hugflow_ray.pipeline.readers.parts import open_part, cut_parts, split_shape, iter_slice
format, root = sys.argv[1], Path(sys.argv[2])
paths = sorted(p for p in root.rglob("*") if p.is_file())
names = [p.relative_to(root).as_posix() for p in paths]
parts, metadata = cut_parts(format, names, [p.stat().st_size for p in paths])
first = [paths[i] for i in parts[0].files]
shape, _ = split_shape(format, None, first, [paths[i] for i in metadata], [names[i] for i in metadata])
rows, blocks, largest, row_id = 0, 0, 0, 0
for part in parts:
    opened = open_part(part, shape, [paths[i] for i in part.files], [names[i] for i in part.files], row_id,
                       np.array([], dtype=np.int64))
    row_id += opened.rows
    for block in iter_slice(opened, 0, 1, block_bytes=1 << 20):
        rows, blocks, largest = rows + block.num_rows, blocks + 1, max(largest, block.nbytes)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))  # this process's own peak
print(json.dumps({"rows": rows, "blocks": blocks, "largest": largest, "peak": int(hwm.split()[1]) * 1024}))
"""


def write_split(root: Path, layout: str, samples: int) -> int:
    """A split of ``samples`` rows of 2 MB each (a WebDataset in 4 shards, or an audio folder); returns its bytes."""
    rng = np.random.default_rng(samples)
    payload = [rng.bytes(2 << 20) for _ in range(4)]  # incompressible; shared, so writing stays cheap
    if layout == "webdataset":
        per_shard = samples // 4
        for shard in range(4):
            members = [(f"k{shard}_{i:04d}.{ext}", data) for i in range(per_shard)
                       for ext, data in (("flac", payload[i % 4]), ("txt", b"words"))]
            (root / f"train-{shard:05d}.tar").write_bytes(fx.tar_bytes(members))
    else:
        (root / "train").mkdir()
        for i in range(samples):
            (root / "train" / f"c{i:04d}.wav").write_bytes(payload[i % 4])
        (root / "train" / "metadata.csv").write_text("file_name,text\n" + "".join(
            f"c{i:04d}.wav,words {i}\n" for i in range(samples)))
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("layout", ["webdataset", "audiofolder"])
def test_reading_a_split_far_larger_than_a_block_holds_about_a_block(tmp_path: Path, layout: str) -> None:
    """The driver's part opening (counting rows, names) and a read task's blocks, over a split 8 times the size of
    another: the process's peak memory (the kernel's high-water mark of its own pages, ``VmHWM``: ``ru_maxrss`` would
    carry the parent's across ``exec``) grows by far less than the split."""
    peaks, sizes = {}, {}
    for samples in (16, 128):
        root = tmp_path / f"{layout}-{samples}"
        root.mkdir()
        sizes[samples] = write_split(root, layout, samples)
        done = subprocess.run([sys.executable, "-c", READ_SCRIPT, layout, str(root)], capture_output=True, text=True,
                              timeout=300, check=True)
        result = json.loads(done.stdout)
        assert result["rows"] == samples and result["blocks"] == samples, "a 2 MB row is a block of its own"
        assert result["largest"] < 3 << 20
        peaks[samples] = result["peak"]
    grown, more = peaks[128] - peaks[16], sizes[128] - sizes[16]
    assert more > 200 << 20
    assert grown < more / 8, f"peak memory grew {grown >> 20} MB for {more >> 20} MB more split: {peaks}"
