"""The README's library-API example runs as written."""
import pathlib
import re


def test_readme_api_example_runs():
    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README.md has no python example"
    ns = {}
    exec(compile(blocks[0], "README.md", "exec"), ns)
    e = ns["e"]
    assert ns["stop"].reason == "count" and ns["stop"].instructions == 1
    assert e.reg_read("eip") == 0x1006
