"""How tests/e2e/test_doc_examples.py reads a guide: which blocks run, which output is shown."""

from __future__ import annotations

from tests.support.doc_examples import documents, examples, masked, script

GUIDE = """# A guide

```sh
echo one
```

```json
{"n": 1}
```

Prose between.

```json
{"not": "this one's expected output"}
```

<!-- not run: it would wait for ever on a stream -->
```sh
curl -sN http://127.0.0.1:8000/graphql
```

```python
print('{"at": "now", "n": 2}')
```
```json
{"at": "then", "n": 2}
```

```js
console.log("not runnable here")
```
"""


def test_blocks_reasons_and_shown_outputs() -> None:
    found = examples(GUIDE)
    assert [(e.line, e.language, e.not_run) for e in found] == [
        (3, "sh", None),
        (18, "sh", "it would wait for ever on a stream"),
        (22, "python", None),
    ]
    assert found[0].expected == '{"n": 1}\n'
    assert found[1].expected is None
    assert found[2].expected == '{"at": "then", "n": 2}\n'


def test_the_script_moves_only_the_address_and_marks_each_block() -> None:
    found = [e for e in examples(GUIDE) if e.not_run is None]
    text = script(found, 4321, "/py")
    assert text.startswith("set -euo pipefail\n")
    assert "printf '\\n@@doc-example 0@@\\n'\necho one\n" in text
    assert "/py - <<'DOC_EXAMPLE_PY'\nprint(" in text
    assert "8000" not in script([examples(GUIDE)[1]], 4321, "/py")


def test_outputs_are_compared_as_json_with_volatile_values_masked() -> None:
    assert documents('{"a": 1}\n {"b": [2]}') == [{"a": 1}, {"b": [2]}]
    assert documents("") == []
    shown = masked(documents('{"at": "then", "n": 2, "x": [{"cursor": "c1"}]}'))
    printed = masked(documents('{"at": "now", "n": 2, "x": [{"cursor": "c2"}]}'))
    assert shown == printed
    assert masked({"n": 3}) != masked({"n": 2})
    assert masked({"at": 1}) != masked({"n": 1})
