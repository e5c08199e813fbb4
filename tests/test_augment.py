"""The augmentation kernel against OpenCV (random images and maps, several seeds), against the PaddleClas
reference outputs, thread-count independence, and the invalid-input cases. nbs/08_augment.ipynb explains it."""
import cv2
import numpy as np
import pytest

from feature_extraction.augment import (IMAGENET_STD, clip_window, compose, crop_map, flip_map, pad_map, random_affine,
                                        reference_warp_normalize_batch, resize_map, rotation_map,
                                        warp_normalize_batch)


def random_batch(seed, n=10, out=(29, 37)):
    rng = np.random.default_rng(seed)
    imgs = [rng.integers(0, 256, (int(rng.integers(1, 50)), int(rng.integers(1, 50)), 3), np.uint8) for _ in range(n)]
    return imgs, np.stack([random_affine(rng, im.shape[:2], out) for im in imgs]), out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("border", ["constant", "replicate"])
def test_kernel_matches_cv2_warp_affine(seed, border):
    imgs, mats, out = random_batch(seed)
    got = warp_normalize_batch(imgs, mats, out, 0, 1, 1, border=border, num_threads=1)
    want = reference_warp_normalize_batch(imgs, mats, out, 0, 1, 1, border=border)
    assert np.abs(got - want).max() <= 1  # in 8-bit levels
    got = warp_normalize_batch(imgs, mats, out, 0, 1, 1, border=border, round_values=False)
    want = reference_warp_normalize_batch(imgs, mats, out, 0, 1, 1, border=border, round_values=False)
    assert np.abs(got - want).max() <= 0.01


@pytest.mark.parametrize("seed", range(3))
def test_normalisation_and_threads(seed):
    imgs, mats, out = random_batch(seed, n=9)
    one = warp_normalize_batch(imgs, mats, out, num_threads=1)
    two = warp_normalize_batch(imgs, mats, out, num_threads=2)
    np.testing.assert_array_equal(one, two)
    want = reference_warp_normalize_batch(imgs, mats, out)
    assert one.dtype == np.float32 and one.shape == (9, 3) + out
    assert np.abs(one - want).max() <= (1 / 255) / min(IMAGENET_STD) + 1e-5


def test_exact_integer_maps():
    img = np.random.default_rng(1).integers(0, 256, (20, 30, 3), np.uint8)
    M = compose(pad_map(4), crop_map(2, 7), flip_map(20))
    want = np.pad(img, ((4, 4), (4, 4), (0, 0)))[2:22, 7:27][:, ::-1]
    np.testing.assert_array_equal(warp_normalize_batch([img], M[None], (20, 20), 0, 1, 1)[0].transpose(1, 2, 0), want)
    np.testing.assert_allclose(compose(rotation_map(30, (180, 260))), cv2.invertAffineTransform(
        cv2.getRotationMatrix2D((130, 90), 30, 1)), atol=1e-12)


@pytest.fixture(scope="module")
def paddle(shared):
    ref = np.load(shared / "reference/paddleclas/transforms.npz")
    return ref, cv2.imdecode(np.frombuffer(ref["png"], np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]


def test_paddleclas_eval_chain(paddle):
    ref, img = paddle
    got = warp_normalize_batch([img], compose(resize_map(img.shape[:2], (224, 224)))[None], (224, 224),
                               border="replicate")[0]
    diff = np.abs(got - ref["eval_chw"])
    assert (diff * np.array(IMAGENET_STD)[:, None, None] * 255).max() <= 1 + 1e-3
    assert diff.mean() < 0.002


def test_paddleclas_rotation(paddle):
    ref, img = paddle
    M = compose(rotation_map(30, img.shape[:2]))[None]
    rot = warp_normalize_batch([img], M, img.shape[:2], 0, 1, 1)[0].transpose(1, 2, 0)
    inside = warp_normalize_batch([np.full_like(img, 255)], M, img.shape[:2], 0, 1, 1)[0, 0] == 255
    inside = cv2.erode(inside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    inside[:2], inside[-2:], inside[:, :2], inside[:, -2:] = False, False, False, False
    assert inside.mean() > 0.5
    assert np.abs(rot - ref["rotate30_rgb"])[inside].max() <= 1


OK_IMG, OK_M = np.zeros((6, 7, 3), np.uint8), np.zeros((1, 2, 3))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(images=[np.zeros((6, 7, 3), np.float32)]), TypeError, "uint8"),
    (dict(images=[np.zeros((6, 7), np.uint8)]), ValueError, "greyscale"),
    (dict(images=[np.zeros((6, 7, 4), np.uint8)]), ValueError, "H x W x 3"),
    (dict(images=[np.zeros((0, 7, 3), np.uint8)]), ValueError, "empty"),
    (dict(matrices=np.zeros((1, 3, 3))), ValueError, r"\[B, 2, 3\]"),
    (dict(matrices=np.zeros((2, 3))), ValueError, r"\[B, 2, 3\]"),
    (dict(matrices=np.full((1, 2, 3), np.nan)), ValueError, "finite"),
    (dict(matrices=np.zeros((2, 2, 3))), ValueError, "1 images but 2 matrices"),
    (dict(std=(0.2, 0.0, 0.2)), ValueError, "std must be > 0"),
    (dict(mean=(0.1, 0.2)), ValueError, "mean must be 3"),
    (dict(out_size=(0, 5)), ValueError, "out_size height"),
    (dict(out_size=5), ValueError, "out_size"),
    (dict(border="reflect"), ValueError, "border"),
    (dict(num_threads=0), ValueError, "num_threads"),
    (dict(windows=[np.full(16, np.nan)]), ValueError, "finite"),
    (dict(windows=[np.r_[np.ones(6), 0, 5, np.ones(6), 5, 5]]), ValueError, "frame sizes must be >= 1"),
    (dict(windows=np.zeros((2, 1, 16))), ValueError, r"windows must be \[1, K, 16\]"),
    (dict(windows=[None, None]), ValueError, "1 images but 2 window lists"),
    (dict(images=[np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (30000, 30000, 3))]), ValueError, "under 2 GiB"),
])
def test_invalid_input(kwargs, error, match):
    args = dict(images=[OK_IMG], matrices=OK_M, out_size=(4, 4)) | kwargs
    with pytest.raises(error, match=match):
        warp_normalize_batch(**args)


def test_out_buffer():
    imgs, mats, out = random_batch(5, n=4)
    buf = np.full((4, 3) + out, np.nan, np.float32)
    assert warp_normalize_batch(imgs, mats, out, out=buf) is buf
    np.testing.assert_array_equal(buf, warp_normalize_batch(imgs, mats, out))
    transposed = np.zeros((4, 3, out[1], out[0]), np.float32).transpose(0, 1, 3, 2)
    for bad in (np.zeros((4, 3) + out), np.zeros((3, 3) + out, np.float32), transposed):
        with pytest.raises(ValueError, match="out must be a C-contiguous float32 array"):
            warp_normalize_batch(imgs, mats, out, out=bad)


def test_windows_match_reference():
    "Pad/crop/rotate windows on noise: the kernel (fast runs, black runs, slow pixels) against cv2 + NumPy weights."
    rng = np.random.default_rng(11)
    for border in ("constant", "replicate"):
        imgs = [rng.integers(0, 256, (int(rng.integers(8, 60)), int(rng.integers(8, 60)), 3), np.uint8)
                for _ in range(8)]
        maps, wins = [], []
        for im in imgs:
            hw = im.shape[:2]
            pad, top, left = int(rng.integers(0, 8)), int(rng.integers(0, 8)), int(rng.integers(0, 8))
            rot = rotation_map(float(rng.uniform(-90, 90)), (hw[0] + 2 * pad, hw[1] + 2 * pad))
            maps.append(compose(pad_map(pad), rot, crop_map(top, left)))
            padded = (hw[0] + 2 * pad, hw[1] + 2 * pad)
            wins.append([clip_window(compose(rot, crop_map(top, left)), padded, compose(pad_map(pad)), hw),
                         clip_window(compose(crop_map(top, left)), padded, compose(rot), padded)])
        got = warp_normalize_batch(imgs, np.stack(maps), (30, 40), 0, 1, 1, border=border, windows=wins, num_threads=1)
        want = reference_warp_normalize_batch(imgs, np.stack(maps), (30, 40), 0, 1, 1, border=border, windows=wins)
        assert np.abs(got - want).max() <= 1
        np.testing.assert_array_equal(got, warp_normalize_batch(imgs, np.stack(maps), (30, 40), 0, 1, 1, border=border,
                                                                windows=wins, num_threads=2))


def test_non_contiguous_and_empty():
    img = np.random.default_rng(2).integers(0, 256, (8, 9, 3), np.uint8)
    M = compose(resize_map((8, 9), (5, 6)))[None]
    np.testing.assert_array_equal(warp_normalize_batch([img[:, ::-1]], M, (5, 6)),
                                  warp_normalize_batch([img[:, ::-1].copy()], M, (5, 6)))
    assert warp_normalize_batch([], np.zeros((0, 2, 3)), (5, 6)).shape == (0, 3, 5, 6)
