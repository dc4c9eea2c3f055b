import numpy as np
import pytest

from xraygan.data.dataset import PreparedDataset, resize_images
from xraygan.errors import XrayganError


def test_prepared_dataset_reads_contract(tiny_prepared):
    ds = PreparedDataset.open(tiny_prepared)
    assert ds.classes == ["NORMAL", "PNEUMONIA"] and ds.size == 16 and len(ds) == 48
    tr = ds.indices(split="train")
    assert set(ds.splits[tr]) == {"train"}
    x = ds.tensor(tr[:5])
    assert x.shape == (5, 1, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert resize_images(x, 8).shape == (5, 1, 8, 8)
    # pixels agree with the PNG files
    from PIL import Image
    assert np.array_equal(np.asarray(Image.open(tiny_prepared / ds.rows[3]["file"])), ds.pixels()[3])
    with pytest.raises(XrayganError, match="unknown label"):
        ds.indices(label="FRACTURE")


def test_not_a_dataset(tmp_path):
    with pytest.raises(XrayganError, match="not a prepared dataset"):
        PreparedDataset.open(tmp_path)
