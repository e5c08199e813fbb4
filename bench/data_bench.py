"""Benchmark of the training data pipeline (`feature_extraction.loader`), run by hand (not a test).

Case 1, the icons training list with PP-ShiTuV2's training chain at 224x224 (resize, flip, pad, crop, rotation,
resize, normalise), in images per second:

1. PaddleClas's way, done per image in this process: read the file, `cv2.imdecode`, reverse to RGB, then one
   OpenCV/NumPy call per op as `ppcls/data/preprocess/ops/operators.py` does, the HWC -> CHW transpose, and the
   collation of 256 samples with `np.stack` (OpenCV held to 1 thread);
2. this library's `BatchLoader` (decode, one composed warp per image in C++, batches of 256) with 1 thread;
3. the same with 2 threads.

Rounds alternate the three so that the machine's drifts hit all of them; the ratios of each round are printed and
their median is the result. Targets: (2) / (1) >= 4 and (3) / (2) >= 1.7.

Case 2, generated 3000x2000 JPEG photos through the same chain: PaddleClas's way, this library with full-size
decoding, and with reduced decoding (`IMREAD_REDUCED_*`, used because the chain starts with a resize to 224x224).

    python bench/data_bench.py                    # both cases, about 2 minutes on 2 cores
    python bench/data_bench.py --images 2048 --rounds 3 --skip-photos
"""

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FE_SHARED_DIR", REPO.parent / "shared"))
CONFIG = SHARED / "reference/paddleclas/GeneralRecognitionV2_PPLCNetV2_base.yaml"
BATCH = 256
TARGET_ONE_THREAD = 4.0   # this pipeline on 1 thread / PaddleClas's way, at least
TARGET_TWO_THREADS = 1.7  # this pipeline on 2 threads / on 1 thread, at least


# ------------------------------------------------------------------------------------- PaddleClas's way

class PaddleClasChain:
    "PP-ShiTuV2's training `transform_ops`, one OpenCV/NumPy call per op, as PaddleClas's operators run them."
    def __init__(self, seed: int = 0):
        self.mean = np.array([0.485, 0.456, 0.406], np.float32).reshape((1, 1, 3))
        self.std = np.array([0.229, 0.224, 0.225], np.float32).reshape((1, 1, 3))
        self.scale = np.float32(1.0 / 255.0)
        random.seed(seed)
        np.random.seed(seed)

    def __call__(self, path: str) -> np.ndarray:
        with open(path, "rb") as f: data = f.read()                                   # CommonDataset.__getitem__
        img = cv2.imdecode(np.frombuffer(data, dtype="uint8"), 1)[:, :, ::-1]       # DecodeImage(to_rgb)
        img = cv2.resize(img, (224, 224), interpolation=cv2.INTER_LINEAR)            # ResizeImage
        if random.randint(0, 1) == 1: img = cv2.flip(img, 1)                         # RandFlipImage
        img = cv2.copyMakeBorder(img, 10, 10, 10, 10, cv2.BORDER_CONSTANT, value=(0, 0, 0))  # Pad
        h, w = img.shape[:2]                                                         # RandCropImageV2
        i, j = random.randint(0, h - 224 + 1), random.randint(0, w - 224 + 1)
        img = img[i:i + 224, j:j + 224, :]
        if np.random.random() < 0.5:                                                 # RandomRotation
            angle = random.uniform(-90, 90)
            hh, ww = img.shape[:2]
            M = cv2.getRotationMatrix2D((ww / 2, hh / 2), angle, 1)
            img = cv2.warpAffine(img, M, (ww, hh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=0)
        img = cv2.resize(img, (224, 224), interpolation=cv2.INTER_LINEAR)            # ResizeImage
        img = (img.astype("float32") * self.scale - self.mean) / self.std             # NormalizeImage(hwc)
        return img.transpose((2, 0, 1))                                              # the dataset's transpose


def paddleclas_way(paths: list) -> float:
    "Images per second of the op-by-op chain plus default collation, in batches of BATCH."
    chain = PaddleClasChain()
    start = time.perf_counter()
    for b in range(0, len(paths), BATCH):
        batch = np.stack([chain(p) for p in paths[b:b + BATCH]])
        assert batch.shape[1:] == (3, 224, 224)
    return len(paths) / (time.perf_counter() - start)


# ----------------------------------------------------------------------------------------- this library

def make_loader(label_file: Path, image_root: Path, count: int, workers: int, reduce: bool = True):
    from feature_extraction.data import ImageNetDataset
    from feature_extraction.loader import BatchLoader, DistributedBatchSampler
    from feature_extraction.transforms import Pipeline
    cfg = yaml.safe_load(open(CONFIG))
    pipeline = Pipeline.from_config(cfg["DataLoader"]["Train"]["dataset"]["transform_ops"])
    data = ImageNetDataset(image_root, label_file)
    sampler = DistributedBatchSampler(data.labels[:count], BATCH, rank=0, world_size=1)
    loader = BatchLoader(data, pipeline, sampler, num_workers=workers, prefetch=2, seed=0)
    if not reduce: loader.builder.reduce_to = None
    return loader


def library_way(loader) -> float:
    "Images per second of one pass of `loader` (batches dropped as they come, as a training step would)."
    start, n = time.perf_counter(), 0
    for batch in loader: n += len(batch)
    return n / (time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------- cases

def icons_case(count: int, rounds: int) -> dict:
    root = SHARED / "datasets/icons"
    label_file = root / "train_list.txt"
    paths = [str(root / line.split()[0]) for line in label_file.read_text().splitlines() if line.strip()][:count]
    loaders = {t: make_loader(label_file, root, len(paths), t) for t in (1, 2)}
    paddleclas_way(paths[:BATCH])  # warm the page cache, the code paths and the loaders' batch memory
    for loader in loaders.values(): library_way(loader)
    rows = []
    for r in range(rounds):
        base, one, two = paddleclas_way(paths), library_way(loaders[1]), library_way(loaders[2])
        rows.append((base, one, two))
        print(f"  round {r + 1}: PaddleClas's way {base:7.0f} img/s | 1 thread {one:7.0f} img/s ({one / base:4.2f}x) | "
              f"2 threads {two:7.0f} img/s ({two / one:4.2f}x of 1 thread)", flush=True)
    return {"rows": rows, "one": statistics.median(o / b for b, o, _ in rows),
            "two": statistics.median(t / o for _, o, t in rows)}


def make_photos(folder: Path, count: int, seed: int = 0) -> Path:
    "`count` 3000x2000 JPEG photos (smooth shapes and noise, quality 90) and their label file."
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        small = rng.uniform(0, 255, (12, 18, 3)).astype(np.float32)
        img = cv2.resize(small, (3000, 2000), interpolation=cv2.INTER_CUBIC)
        img += rng.normal(0, 6, img.shape).astype(np.float32)
        cv2.imwrite(str(folder / f"photo_{i}.jpg"), np.clip(img, 0, 255).astype(np.uint8),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        lines.append(f"photo_{i}.jpg {i % 8}")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return folder / "list.txt"


def photos_case(count: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        label_file = make_photos(Path(tmp), count)
        paths = [str(Path(tmp) / line.split()[0]) for line in label_file.read_text().splitlines()]
        base = paddleclas_way(paths)
        full = library_way(make_loader(label_file, Path(tmp), count, 1, reduce=False))
        reduced = library_way(make_loader(label_file, Path(tmp), count, 1, reduce=True))
    print(f"  PaddleClas's way {base:6.1f} img/s | full decode, 1 thread {full:6.1f} img/s ({full / base:4.2f}x) | "
          f"reduced decode, 1 thread {reduced:6.1f} img/s ({reduced / base:4.2f}x)")
    return {"base": base, "full": full, "reduced": reduced}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4965, help="icons to use per pass (of 4965)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of the icons case")
    parser.add_argument("--photos", type=int, default=48, help="generated 3000x2000 photos")
    parser.add_argument("--skip-photos", action="store_true")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)  # OpenCV's own thread pool would blur "one thread"
    from feature_extraction.core import compiled
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, OpenCV {cv2.__version__}, "
          f"kernel fast path: {compiled('_augment').instruction_set()}, Python {sys.version.split()[0]}")
    print(f"icons, PP-ShiTuV2 training chain, {args.images} images per pass, batches of {BATCH}:")
    icons = icons_case(args.images, args.rounds)
    ok_one, ok_two = icons["one"] >= TARGET_ONE_THREAD, icons["two"] >= TARGET_TWO_THREADS
    print(f"median: 1 thread vs PaddleClas's way {icons['one']:.2f}x (target >= {TARGET_ONE_THREAD}x: "
          f"{'met' if ok_one else 'NOT met'}); 2 threads vs 1 {icons['two']:.2f}x (target >= {TARGET_TWO_THREADS}x: "
          f"{'met' if ok_two else 'NOT met'})")
    if not args.skip_photos:
        print(f"{args.photos} generated 3000x2000 JPEG photos, same chain:")
        photos_case(args.photos)
    return 0 if ok_one and ok_two else 1


if __name__ == "__main__":
    sys.exit(main())
