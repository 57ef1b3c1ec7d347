"""README.md as a newcomer reads it: how to run what it shows, and every command, name and option in it real.
(tests/test_readme.py runs its code blocks.)"""
import pathlib
import re
import shlex

import pytest

import portanet as pn
from example_cli import SCRIPTS, parser_of

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


def make_rule(target):
    """(prerequisites, recipe lines) of a Makefile target."""
    m = re.search(rf"^{re.escape(target)}:([^\n]*)\n((?:\t[^\n]*\n)*)", MAKEFILE, flags=re.M)
    assert m, f"no rule for {target} in the Makefile"
    return m.group(1).split(), [line.strip() for line in m.group(2).splitlines()]


def test_the_readme_says_how_to_run_its_snippets_before_the_first_one():
    before = README[:README.index("```python")]
    assert ".venv/bin/python snippet.py" in before and "make demo" in before and "make test" in before
    assert "pip install -e '.[plot]'" in before


def test_make_demo_installs_what_the_fit_snippet_needs():
    """After `make demo`, the fit snippet's history.plot runs: the demo's environment has the plot extra."""
    assert "history.plot(" in README
    prerequisites, _ = make_rule("demo")
    assert "$(VENV)/.plot" in prerequisites
    _, recipe = make_rule("$(VENV)/.plot")
    assert any("'.[plot]'" in line for line in recipe)
    plot_extra = re.search(r'^plot = \[(.*)\]$', (ROOT / "pyproject.toml").read_text(), flags=re.M)
    assert plot_extra and '"matplotlib' in plot_extra.group(1)


def test_every_make_command_in_the_readme_is_a_target():
    targets = set(re.findall(r"`make ([a-z][\w-]*)`|^make ([a-z][\w-]*)", README, flags=re.M))
    targets = {a or b for a, b in targets}
    assert {"demo", "test", "bench", "bench-gpu"} <= targets
    for target in targets:
        make_rule(target)


def test_every_pn_name_in_the_readme_exists():
    names = set(re.findall(r"\bpn\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)", README))
    assert {"load_torch_state_dict", "torch_state_dict", "fit", "DataLoader"} <= names
    for dotted in sorted(names):
        obj = pn
        for part in dotted.split("."):
            assert hasattr(obj, part), f"README names pn.{dotted}, which does not exist"
            obj = getattr(obj, part)


def test_the_examples_table_lists_every_example_with_options_it_has():
    rows = re.findall(r"^\| `examples/(\w+\.py)` \| (.*) \|$", README, flags=re.M)
    assert sorted(script for script, _ in rows) == SCRIPTS
    for script, text in rows:
        options = {o for a in parser_of(script)._actions for o in a.option_strings}
        assert {"--device", "--epochs", "--seed", "--help"} <= options, script
        for option in re.findall(r"--[a-z][\w-]*", text):
            assert option in options, f"README's table gives {script} {option}, which it does not take"


@pytest.mark.parametrize("command", sorted(set(re.findall(r"python (examples/\w+\.py[^`\n]*)`", README))))
def test_every_example_command_in_the_readme_parses(command):
    script, *args = shlex.split(command)
    parser_of(pathlib.Path(script).name).parse_args(args)      # exits (SystemExit) on an option it lacks
