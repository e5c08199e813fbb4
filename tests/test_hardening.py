"""Issue 18: each failure found by probing the library as a demanding user, reproduced, and now handled."""
from feature_extraction.cli import fe_train
from feature_extraction.data import demo_data


def demo_train_arguments(output_dir, *overrides) -> list:
    "`fe_train` arguments for the bundled demo data, writing to `output_dir`."
    data = demo_data()
    arguments = ["-c", str(data.parent / "demo.yaml"), "-o", f"Global.output_dir={output_dir}",
                 f"DataLoader.Train.dataset.image_root={data}",
                 f"DataLoader.Train.dataset.cls_label_path={data / 'train_list.txt'}"]
    for part in ("Query", "Gallery"):
        arguments += [f"DataLoader.Eval.{part}.dataset.image_root={data}",
                      f"DataLoader.Eval.{part}.dataset.cls_label_path={data / 'test_list.txt'}"]
    return arguments + list(overrides)


def test_class_num_smaller_than_the_labels_is_one_clear_error(tmp_path, capsys):
    # 5: before, the first batch crashed inside Paddle's one-hot kernel ("Illegal index value")
    status = fe_train(demo_train_arguments(tmp_path / "run", "Arch.Head.class_num=10"))
    err = capsys.readouterr().err
    assert status == 1
    assert "Arch.Head.class_num: 10, but the labels of" in err and "set it to at least 150" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "latest.pdparams").exists()


def write_label_file(path, lines: list, encoding: str = "utf-8"):
    "A label file of demo images plus `lines`, in `encoding`."
    demo_lines = (demo_data() / "train_list.txt").read_text(encoding="utf-8").splitlines()[:50]
    path.write_bytes("\n".join(demo_lines + lines).encode(encoding) + b"\n")
    return path


def test_label_file_errors_are_one_report_without_a_traceback(tmp_path, capsys):
    # 6: a bad line and a Latin-1 file came out under a 30-line traceback (a bare UnicodeDecodeError for Latin-1)
    data = demo_data()
    for name, lines, encoding, expected in [
            ("bad_line.txt", ["onlyonefield"], "utf-8", "line 51: 1 columns, expected 2"),
            ("latin1.txt", ["café.png 3"], "latin-1", "line 51: not UTF-8 text (byte 0xe9)")]:
        label_file = write_label_file(tmp_path / name, lines, encoding)
        overrides = [f"DataLoader.Train.dataset.cls_label_path={label_file}",
                     f"DataLoader.Train.dataset.image_root={data}"]
        status = fe_train(demo_train_arguments(tmp_path / "run", *overrides))
        err = capsys.readouterr().err
        assert status == 1, name
        assert expected in err and str(label_file) in err, err
        assert "Traceback" not in err, err
