"""The README's "Try it" commands, run as written: what a newcomer copies must do what its comments say."""

import json
import re
import subprocess

import pytest
from conftest import ROOT, service_environment

COMMENT = re.compile(r"\s{2,}#\s?(.*)$")


def readme_sh_blocks(section: str) -> list[list[tuple[str, str]]]:
    """The ```sh blocks of one README section, as (command, comment) lines, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    parsed = []
    for block in re.findall(r"```sh\n(.*?)```", body, re.DOTALL):
        lines = []
        for line in block.replace("\\\n", " ").splitlines():
            match = COMMENT.search(line)
            lines.append((line[:match.start()].strip(), match[1].strip()) if match else (line.strip(), ""))
        parsed.append(lines)
    return parsed


def try_it_blocks() -> list[list[tuple[str, str]]]:
    """The ```sh blocks of the README's "Try it" section, as (command, comment) lines."""
    return readme_sh_blocks("Try it")


def expected_json(comment: str) -> dict | None:
    return json.loads(comment) if comment.startswith("{") else None


def test_the_try_it_section_has_a_local_and_a_container_block():
    local, container = try_it_blocks()
    assert any("python -m service" in command for command, _ in local)
    assert any(command.startswith("docker run -d --name api -p 8080:5000") for command, _ in container)
    for name in ("docker ps", "docker logs", "docker exec", "docker stop", "docker rm"):
        assert any(command.startswith(name) for command, _ in container), name


def test_the_local_block_serves_both_endpoints_as_its_comments_say(tmp_path):
    local, _ = try_it_blocks()
    script = "set -e\n" + "\n".join(command for command, _ in local) + "\n"
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=service_environment())
    assert result.returncode == 0, result.stderr[-2000:]
    # curl prints no newline after a body, so an access line may follow it on the same line
    answers = [json.loads(body) for body in re.findall(r"\{[^{}]*\}", result.stdout)]
    assert answers == [expected_json(comment) for _, comment in local if expected_json(comment)]


@pytest.mark.docker
def test_the_container_block_runs_as_written_and_each_comment_holds(engine):
    _, container = try_it_blocks()
    subprocess.run(["docker", "rm", "-f", "api"], capture_output=True)
    try:
        for command, comment in container:
            result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True,
                                    timeout=900, env=service_environment())
            assert result.returncode == 0, f"{command!r} failed: {result.stderr[-2000:]}"
            check_comment(command, comment, result.stdout, result.stderr)
    finally:
        subprocess.run(["docker", "rm", "-f", "api"], capture_output=True)


def check_comment(command: str, comment: str, output: str, errors: str) -> None:
    """What the comment beside a command promises, checked against what it printed or left."""
    if (wanted := expected_json(comment)) is not None:
        assert json.loads(output) == wanted, command
    elif command.startswith("docker ps"):
        assert re.search(r"\bUp\b.*\bapi$", output, re.MULTILINE), output
    elif command.startswith("docker logs"):  # the start-up line goes to stderr, access lines to stdout
        assert "serving environment=production" in errors, errors
        assert " GET /health 200 " in output and " GET /hello/World 200 " in output, output
    elif command.startswith("docker exec"):
        assert output.strip() == comment.split()[0], output
    elif command.startswith("docker stop"):
        code = subprocess.run(["docker", "inspect", "--format", "{{.State.ExitCode}}", "api"],
                              capture_output=True, text=True).stdout.strip()
        assert code == "0", f"docker stop left exit code {code}"
