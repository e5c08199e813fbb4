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
