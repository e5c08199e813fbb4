"""Small helpers to edit notebooks as JSON: cells keep ids; new cells get fresh ids."""
import json
import uuid


def load(path): return json.load(open(path))


def save(nb, path):
    with open(path, "w") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")


def lines(text):
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def code(text):
    return {"cell_type": "code", "execution_count": None, "id": uuid.uuid4().hex[:8], "metadata": {}, "outputs": [],
            "source": lines(text)}


def md(text):
    return {"cell_type": "markdown", "id": uuid.uuid4().hex[:8], "metadata": {}, "source": lines(text)}


def find(nb, cell_id):
    for i, c in enumerate(nb["cells"]):
        if c.get("id") == cell_id: return i
    raise KeyError(cell_id)


def set_source(nb, cell_id, text):
    nb["cells"][find(nb, cell_id)]["source"] = lines(text)


def source(nb, cell_id): return "".join(nb["cells"][find(nb, cell_id)]["source"])
