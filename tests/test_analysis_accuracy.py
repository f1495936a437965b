"""The analysis accuracy report (train/diagnostics/analysis_accuracy.py): its RESULTS.md section."""

import json

from train.diagnostics.analysis_accuracy import OUT, SECTION, TRIED, markdown, replace_section


def test_the_results_section_is_replaced_in_place_and_nothing_else_changes():
    text = f"# Results\n\n## Models\nrows\n\n{SECTION}: old\nold table\n\n## Later\nkept\n"
    updated = replace_section(text, f"{SECTION}: new\nnew table\n")
    assert updated == f"# Results\n\n## Models\nrows\n\n{SECTION}: new\nnew table\n\n## Later\nkept\n"
    assert replace_section("# Results\n", f"{SECTION}: new\n") == f"# Results\n\n{SECTION}: new\n"


def test_the_section_lists_what_was_tried():
    if not OUT.is_file():
        return
    section = markdown(json.loads(OUT.read_text()))
    assert section.startswith(SECTION)
    assert all(f"- {item}" in section for item in TRIED)
