"""xraygan.utils.pixels: the pixel conventions (uint8 <-> [-1, 1] <-> [0, 1]), numpy and torch."""

import numpy as np
import pytest
import torch

from xraygan.utils import pixels as px

ALL = np.arange(256, dtype=np.uint8)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_round_trip_of_all_256_values_is_exact(kind):
    u = ALL.reshape(16, 16) if kind == "numpy" else torch.from_numpy(ALL.reshape(16, 16))
    x = px.to_signed(u)
    assert x.dtype in (np.float32, torch.float32) and tuple(x.shape) == (16, 16)
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    back = px.to_uint8(x)
    assert tuple(back.shape) == (16, 16) and back.dtype in (np.uint8, torch.uint8)
    np.testing.assert_array_equal(np.asarray(back).ravel(), ALL)
    np.testing.assert_array_equal(np.asarray(px.to_uint8_mul_add(x)).ravel(), ALL)
    np.testing.assert_array_equal(np.asarray(px.unit_to_uint8(px.to_unit(u))).ravel(), ALL)


def test_numpy_and_torch_agree_bitwise():
    a = px.to_signed(ALL)
    b = px.to_signed(torch.from_numpy(ALL)).numpy()
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    np.testing.assert_array_equal(px.signed_tensor(ALL).numpy().view(np.uint32), b.view(np.uint32))
    np.testing.assert_array_equal(px.to_unit(ALL), px.to_unit(torch.from_numpy(ALL)).numpy())
    x = np.linspace(-1.3, 1.3, 20001, dtype=np.float32)
    np.testing.assert_array_equal(px.to_uint8(x), px.to_uint8(torch.from_numpy(x)).numpy())


def test_out_of_range_floats_are_clamped():
    x = torch.tensor([-5.0, -1.0001, -1.0, 1.0, 1.0001, 7.0, float("inf"), float("-inf")])
    assert px.to_uint8(x).tolist() == [0, 0, 0, 255, 255, 255, 255, 0]
    assert px.to_uint8(x.numpy()).tolist() == [0, 0, 0, 255, 255, 255, 255, 0]
    assert px.round_to_uint8(np.array([-3.0, 255.4, 255.6, 300.0])).tolist() == [0, 255, 255, 255]
    assert px.unit_to_uint8(np.array([-0.5, 0.0, 1.0, 2.0], np.float32)).tolist() == [0, 0, 255, 255]


def test_rounding_is_half_to_even():
    assert px.round_to_uint8(np.array([0.5, 1.5, 2.5, 254.5])).tolist() == [0, 2, 2, 254]
    assert px.round_to_uint8(torch.tensor([0.5, 1.5, 2.5, 254.5])).tolist() == [0, 2, 2, 254]


def test_clamp_after_rounding_equals_clamp_first():
    """The callers used both orders; they agree on every finite value and on +-inf."""
    x = torch.cat([torch.linspace(-1.5, 1.5, 300001), torch.tensor([float("inf"), float("-inf")])])
    first = ((x.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    assert torch.equal(px.to_uint8(x), first)


def test_mul_add_variant_matches_its_formula_bitwise():
    x = torch.rand(100_000, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(px.to_uint8_mul_add(x), (x * 127.5 + 127.5).round().clamp(0, 255).byte())
    assert torch.equal(px.to_uint8(x), ((x + 1) * 127.5).round().clamp(0, 255).byte())


def test_dtype_shape_and_device_are_kept():
    u = np.zeros((2, 3, 5), np.uint8)
    assert px.to_signed(u).shape == (2, 3, 5) and px.to_signed(u).dtype == np.float32
    assert px.to_unit(u, np.float64).dtype == np.float64
    assert px.to_unit(torch.from_numpy(u), np.float64).dtype == torch.float64
    t = px.signed_tensor(u)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and tuple(t.shape) == (2, 3, 5)
    assert px.signed_to_unit(torch.zeros(4, dtype=torch.float64)).dtype == torch.float64
    assert px.signed_to_unit(np.full(3, -1.0, np.float32)).tolist() == [0.0, 0.0, 0.0]
    assert px.to_uint8(torch.zeros(1, 1, 4, 4)).shape == (1, 1, 4, 4)


def test_signed_tensor_accepts_read_only_and_strided_arrays():
    u = np.arange(64, dtype=np.uint8).reshape(8, 8)[::-1, ::2]
    u.flags.writeable = False
    t = px.signed_tensor(u)
    np.testing.assert_array_equal(px.to_uint8(t).numpy(), u)
