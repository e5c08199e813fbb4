"""Label files and image decoding: the real icons lists, relabelling, the one-exception error report (with its
truncation), delimiters and non-ASCII paths, the data sets from YAML entries, and decoding (RGB order, greyscale,
alpha on white, 16 bit, reduced JPEG decoding, corrupt inputs). The notebook nbs/07_data.ipynb explains the design."""
import os
import cv2
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from feature_extraction.data import (DATASETS, ImageDecodeError, ImageNetDataset, LabelFile, LabelFileError, VeriWild,
                                     decode_image, jpeg_info, load_image, read_label_file, reference_jpeg_info)


def sample_bgr(h=120, w=160):
    y, x = np.mgrid[:h, :w]
    return np.stack([x % 256, y % 256, (x * 3 + y) % 256], -1).astype(np.uint8)


def write_images(root, names):
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(cv2.imencode(".jpg", sample_bgr())[1].tobytes())


# --- label files -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, n_train, c_train, n_test", [("icons", 4965, 837, 5031), ("icons-mini", 605, 150, 588)])
def test_icons_lists(shared, name, n_train, c_train, n_test):
    root = shared / "datasets" / name
    train, test = read_label_file(root / "train_list.txt"), read_label_file(root / "test_list.txt")
    assert isinstance(train, LabelFile) and (len(train), train.num_classes) == (n_train, c_train)
    assert train.unique_ids is None and train.labels.dtype == np.int64
    assert len(test) == n_test and test.unique_ids.dtype == np.int64
    assert len(np.unique(test.unique_ids)) == n_test
    lines = (root / "test_list.txt").read_text().split("\n")
    first = lines[0].split()
    assert test.paths[0] == os.path.abspath(root / first[0]) and test.labels[0] == int(first[1])
    assert test.unique_ids[0] == int(first[2]) and test.source.endswith("test_list.txt")
    # labels already 0..C-1: relabel keeps them
    rl = read_label_file(root / "train_list.txt", relabel=True)
    assert np.array_equal(rl.labels, train.labels) and rl.label_map == {i: i for i in range(c_train)}


def test_relabel_sorted(tmp_path):
    write_images(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    (tmp_path / "l.txt").write_text("a.jpg 900\nb.jpg -5\nc.jpg 17\nd.jpg 900\n")
    lf = read_label_file(tmp_path / "l.txt", relabel=True)
    assert lf.labels.tolist() == [2, 0, 1, 2] and lf.label_map == {-5: 0, 17: 1, 900: 2}
    with pytest.raises(LabelFileError, match="negative label"):  # not relabelled: -5 cannot index a class
        read_label_file(tmp_path / "l.txt")


def test_image_root_and_comments(tmp_path):
    write_images(tmp_path / "imgs", ["x/a.jpg"])
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "l.txt").write_text("\ufeff# comment\n\n   \nx/a.jpg   3  \r\n# end\n")
    lf = read_label_file(tmp_path / "lists" / "l.txt", image_root=tmp_path / "imgs")
    assert lf.paths == [str(tmp_path / "imgs" / "x" / "a.jpg")] and lf.labels.tolist() == [3]
    with pytest.raises(LabelFileError, match="image file not found"):  # default root: the list's folder
        read_label_file(tmp_path / "lists" / "l.txt")
    assert len(read_label_file(tmp_path / "lists" / "l.txt", check_files=False)) == 1


def test_error_report_all_lines(tmp_path):
    write_images(tmp_path, ["a.jpg", "b.jpg"])
    text = ("a.jpg 0 1\n"
            "b.jpg zero 2\n"         # 2: bad label
            "missing.jpg 0 3\n"      # 3: missing image
            "a.jpg 1 1\n"            # 4: duplicate unique id
            "b.jpg 1\n"              # 5: wrong column count
            "# comment\n"
            "a.jpg 1 4.5\n"          # 7: bad unique id
            "a.jpg 1.0 6\n"          # 8: bad label
            "a.jpg 1 2 3 4\n")       # 9: wrong column count
    (tmp_path / "bad.txt").write_text(text)
    with pytest.raises(LabelFileError) as info:
        read_label_file(tmp_path / "bad.txt")
    e = info.value
    assert [n for n, _, _ in e.errors] == [2, 3, 4, 5, 7, 8, 9]
    msg = str(e)
    assert msg.startswith(f"{tmp_path / 'bad.txt'}: 7 bad lines")
    for needle in ["line 2: label 'zero' is not an integer: 'b.jpg zero 2'", "line 3: image file not found",
                   "missing.jpg", "line 4: duplicate unique id 1 (first on line 1)",
                   "line 5: 2 columns, expected 3", "line 7: unique id '4.5'", "line 8: label '1.0'",
                   "line 9: 5 columns"]:
        assert needle in msg, needle
    assert "more bad lines" not in msg and isinstance(e, ValueError)


def test_error_report_truncated(tmp_path):
    (tmp_path / "l.txt").write_text("".join(f"img{i}.jpg {i}\n" for i in range(45)))
    with pytest.raises(LabelFileError) as info:
        read_label_file(tmp_path / "l.txt")
    msg = str(info.value)
    assert len(info.value.errors) == 45 and ": 45 bad lines" in msg
    assert "line 20:" in msg and "line 21:" not in msg and "... and 25 more bad lines" in msg


def test_column_count_by_majority(tmp_path):
    write_images(tmp_path, ["a.jpg"])
    (tmp_path / "l.txt").write_text("a.jpg 0 1\na.jpg 0\na.jpg 0\n")  # first line is the odd one
    with pytest.raises(LabelFileError) as info:
        read_label_file(tmp_path / "l.txt")
    assert [n for n, _, _ in info.value.errors] == [1]


def test_empty_and_missing_label_file(tmp_path):
    for text in ["", "\n\n", "# only a comment\n"]:
        (tmp_path / "e.txt").write_text(text)
        with pytest.raises(LabelFileError, match="no samples"):
            read_label_file(tmp_path / "e.txt")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_label_file(tmp_path / "nope.txt")


def test_delimiter_spaces_and_non_ascii(tmp_path):
    names = ["my images/a b.jpg", "Bilder/Größe ß.jpg", "图片/猫.jpg"]
    write_images(tmp_path, names)
    (tmp_path / "tab.txt").write_text("".join(f"{n}\t{i}\t{i + 1}\n" for i, n in enumerate(names)), encoding="utf-8")
    lf = read_label_file(tmp_path / "tab.txt", delimiter="\t")
    assert lf.paths == [str(tmp_path / n) for n in names] and lf.unique_ids.tolist() == [1, 2, 3]
    assert all(load_image(p).shape == (120, 160, 3) for p in lf.paths)
    with pytest.raises(LabelFileError, match="columns"):  # whitespace split cannot hold paths with spaces
        read_label_file(tmp_path / "tab.txt")
    # a single-space delimiter (PaddleClas's default) does not accept double spaces
    (tmp_path / "sp.txt").write_text("图片/猫.jpg  1\n", encoding="utf-8")
    with pytest.raises(LabelFileError, match="line 1: empty field"):
        read_label_file(tmp_path / "sp.txt", delimiter=" ")
    assert read_label_file(tmp_path / "sp.txt").labels.tolist() == [1]


# --- data sets ---------------------------------------------------------------------------------------------------

def test_datasets_from_config(shared):
    root = shared / "datasets" / "icons-mini"
    assert "ImageNetDataset" in DATASETS and "VeriWild" in DATASETS
    train = DATASETS.build({"name": "ImageNetDataset", "image_root": str(root),
                            "cls_label_path": str(root / "train_list.txt"), "relabel": True, "delimiter": " "})
    assert isinstance(train, ImageNetDataset) and len(train) == 605 and train.unique_ids is None
    img, label = train[3]
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and label == train.labels[3]
    assert np.array_equal(img, cv2.imread(train.paths[3])[:, :, ::-1])
    test = DATASETS.build({"name": "VeriWild", "image_root": str(root), "cls_label_path": str(root / "test_list.txt")})
    assert isinstance(test, VeriWild) and len(test) == 588
    img, label, uid = test[-1]
    assert (label, uid) == (int(test.labels[-1]), int(test.unique_ids[-1]))
    with pytest.raises(IndexError):
        test[588]


def test_dataset_reports_bad_image(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"not an image")
    (tmp_path / "l.txt").write_text("x.jpg 0\n")
    ds = VeriWild(tmp_path, tmp_path / "l.txt")
    with pytest.raises(ImageDecodeError, match="x.jpg"):
        ds[0]


# --- decoding ----------------------------------------------------------------------------------------------------

def test_reference_png(shared):
    png = np.load(shared / "reference" / "paddleclas" / "transforms.npz")["png"]
    img = decode_image(png.tobytes())
    assert img.shape == (180, 260, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
    assert np.array_equal(img, cv2.imdecode(png, cv2.IMREAD_COLOR)[:, :, ::-1])


def test_rgb_order_vs_imread(tmp_path):
    bgr = sample_bgr()
    for ext in [".png", ".jpg", ".bmp", ".webp"]:
        path = tmp_path / f"s{ext}"
        assert cv2.imwrite(str(path), bgr)
        assert np.array_equal(load_image(path), cv2.imread(str(path))[:, :, ::-1]), ext
    assert np.array_equal(decode_image(cv2.imencode(".png", bgr)[1].tobytes()), bgr[:, :, ::-1])


def test_greyscale_alpha_16bit():
    grey = sample_bgr()[:, :, 1]
    img = decode_image(cv2.imencode(".png", grey)[1].tobytes())
    assert img.shape == (120, 160, 3) and all(np.array_equal(img[:, :, c], grey) for c in range(3))
    jgrey = decode_image(cv2.imencode(".jpg", grey)[1].tobytes())
    assert jgrey.shape == (120, 160, 3) and np.array_equal(jgrey[:, :, 0], jgrey[:, :, 2])
    bgra = np.dstack([sample_bgr(), np.zeros((120, 160), np.uint8)])
    bgra[:60, :, 3] = 255                          # top opaque, bottom fully transparent
    img = decode_image(cv2.imencode(".png", bgra)[1].tobytes())
    assert np.array_equal(img[:60], sample_bgr()[:60, :, ::-1]) and (img[60:] == 255).all()
    half = np.zeros((1, 1, 4), np.uint8)
    half[..., 3] = 128  # black at alpha 128 -> 127
    assert decode_image(cv2.imencode(".png", half)[1].tobytes()).tolist() == [[[127, 127, 127]]]
    bgr16 = (sample_bgr().astype(np.uint16) << 8) | 0xFF
    img = decode_image(cv2.imencode(".png", bgr16)[1].tobytes())
    assert img.dtype == np.uint8 and np.array_equal(img, sample_bgr()[:, :, ::-1])
    png16 = cv2.imencode(".png", bgr16)[1]
    assert np.array_equal(img, cv2.imdecode(png16, cv2.IMREAD_COLOR)[:, :, ::-1])  # as PaddleClas reads it


def test_reduced_jpeg_decoding():
    big = cv2.imencode(".jpg", cv2.resize(sample_bgr(), (3000, 2000)))[1].tobytes()
    cases = {None: (2000, 3000), (224, 224): (250, 375), (250, 375): (250, 375), (251, 375): (500, 750),
             (500, 700): (500, 750), (501, 700): (1000, 1500), (600, 600): (1000, 1500), (1001, 10): (2000, 3000),
             (2000, 3000): (2000, 3000)}
    for reduce_to, hw in cases.items():
        assert decode_image(big, reduce_to=reduce_to).shape == (*hw, 3), reduce_to
    small = decode_image(big, reduce_to=(224, 224))
    full = cv2.resize(decode_image(big), (375, 250), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - full).mean() < 8  # the same picture, smaller
    png = cv2.imencode(".png", cv2.resize(sample_bgr(), (3000, 2000)))[1].tobytes()
    assert decode_image(png, reduce_to=(224, 224)).shape == (2000, 3000, 3)  # only JPEG is reduced


def test_corrupt_inputs(tmp_path):
    jpg = cv2.imencode(".jpg", sample_bgr())[1].tobytes()
    assert decode_image(jpg + b"\0" * 16).shape == (120, 160, 3)  # padding after the end marker is fine
    bad = {"empty": b"", "truncated JPEG": jpg[:len(jpg) // 2], "no end-of-image": jpg[:-2],
           "headers": jpg[:30], "cannot decode": b"relative/path 3\n",
           "cannot decode ": cv2.imencode(".png", sample_bgr())[1].tobytes()[:200]}
    for what, data in bad.items():
        with pytest.raises(ImageDecodeError) as info:
            decode_image(data)
        assert what.strip() in str(info.value) or what == "no end-of-image" and "end-of-image" in str(info.value), what
    for name, data in [("zero.jpg", b""), ("text.jpg", b"hello"), ("cut.jpg", jpg[:500])]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageDecodeError, match=name):
            load_image(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")


def test_jpeg_with_exif_thumbnail():
    "An APP1 Exif segment holding a complete thumbnail does not hide the truncation of the main image."
    jpg = cv2.imencode(".jpg", sample_bgr())[1].tobytes()
    thumb = cv2.imencode(".jpg", sample_bgr(8, 8))[1].tobytes()
    payload = b"Exif\0\0" + thumb
    withexif = jpg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpg[2:]
    assert np.array_equal(decode_image(withexif), decode_image(jpg))
    with pytest.raises(ImageDecodeError, match="truncated JPEG"):
        decode_image(withexif[:-300])
    # with EXIF the reduction must fit the image turned by 90 degrees too
    big = cv2.imencode(".jpg", cv2.resize(sample_bgr(), (3000, 2000)))[1].tobytes()
    big_exif = big[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + big[2:]
    assert decode_image(big, reduce_to=(250, 700)).shape == (500, 750, 3)
    assert decode_image(big_exif, reduce_to=(250, 700)).shape == (1000, 1500, 3)


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(0, 2**32 - 1))
def test_compiled_jpeg_info_matches_reference(seed):
    "The compiled header walk against the Python one, on cut, corrupted and padded JPEGs."
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (int(rng.integers(1, 40)), int(rng.integers(1, 40)), 3), np.uint8)
    data = bytearray(cv2.imencode(".jpg", img)[1].tobytes())
    for _ in range(int(rng.integers(0, 4))):
        data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
    data = bytes(data[:int(rng.integers(0, len(data) + 1))]) + bytes(int(rng.integers(0, 3)))
    assert jpeg_info(data) == reference_jpeg_info(data)
