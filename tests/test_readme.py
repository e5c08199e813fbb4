"""The README is generated from nbs/index.ipynb, and CI must run exactly the README's test command."""
import re

from conftest import REPO


def readme_commands(section: str) -> list:
    "Shell commands in the first ```sh block after the README heading `section`."
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"## {section}")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_ci_runs_the_readme_test_command():
    (command,) = readme_commands("Run the tests")
    ci_lines = [line for line in (REPO / ".ci/run").read_text().splitlines()
                if line and not line.startswith(("#", "set ", "cd "))]
    assert ci_lines == [command], f".ci/run runs {ci_lines}, README says {command!r}"


def test_readme_demo_command_is_installed():
    "The README's main-job command is the install plus `fe_demo`, a console script of the package."
    (command,) = readme_commands("Run the demo")
    assert command == 'pip install -e ".[cpu,dev]" && fe_demo'
    scripts = [line for line in (REPO / "settings.ini").read_text().splitlines() if line.startswith("console_scripts")]
    assert "fe_demo=feature_extraction.cli:fe_demo" in scripts[0].split()
