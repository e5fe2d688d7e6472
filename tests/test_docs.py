"""The documentation a user reads first: README.md stays a front page, its set-up commands stay
where CI and readers look for them, and no relative link in README.md or docs/ leads nowhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"
DOCS = sorted((REPO_ROOT / "docs").glob("*.md"))

# A front page, not a log: the rest belongs in docs/ (the target is ~10 KB).
README_MAX_BYTES = 12_000
# [text](target) and ![alt](target); a target may carry a "title" after a space.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
EXTERNAL = ("http://", "https://", "mailto:")


def relative_links(markdown: Path) -> list[str]:
    """The relative link targets of a Markdown file, without their #anchors; code is skipped."""
    text = INLINE_CODE.sub("", FENCE.sub("", markdown.read_text(encoding="utf-8")))
    targets = (match.group(1) for match in LINK.finditer(text))
    paths = (target.split("#", 1)[0] for target in targets if not target.startswith(EXTERNAL))
    return [path for path in paths if path]


@pytest.mark.parametrize(
    "markdown", [README, *DOCS], ids=lambda path: str(path.relative_to(REPO_ROOT))
)
def test_every_relative_link_points_to_an_existing_file(markdown: Path) -> None:
    missing = [link for link in relative_links(markdown) if not (markdown.parent / link).exists()]
    assert not missing, (
        f"{markdown.relative_to(REPO_ROOT)} links to files that do not exist: {missing}"
    )


def test_the_readme_is_a_front_page() -> None:
    size = README.stat().st_size
    assert size < README_MAX_BYTES, (
        f"README.md is {size} bytes (limit {README_MAX_BYTES}): move sections into docs/"
    )


def test_the_readme_opens_with_the_two_set_up_commands() -> None:
    first_block = FENCE.search(README.read_text(encoding="utf-8"))
    assert first_block is not None, "README.md has no code block"
    assert "bash scripts/demo.sh" in first_block.group(0)
    assert "bash scripts/test.sh" in first_block.group(0)


def test_the_link_finder_sees_links_and_skips_code(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "See [a](a.md#part), ![b](shots/b.png), [web](https://example.com), [c](#here).\n"
        "`[not](code.md)`\n```\n[nor](fenced.md)\n```\n",
        encoding="utf-8",
    )
    assert relative_links(page) == ["a.md", "shots/b.png"]


def test_every_command_is_in_the_cli_reference() -> None:
    import click

    from llm_rollout.cli.main import cli

    def paths(group: click.Group, prefix: str) -> list[str]:
        found = []
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                found += paths(command, f"{prefix}{name} ")
            else:
                found.append(f"{prefix}{name}")
        return found

    reference = (REPO_ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    missing = [path for path in paths(cli, "llm-rollout ") if f"`{path}" not in reference]
    assert not missing, f"docs/cli.md does not document {missing}"
    assert "## Exit codes" in reference
