import sys
import textwrap

import pytest

from tests.helpers.multiprocess import run_command


def test_run_command_hang_fails_fast_with_every_process_stack(tmp_path):
    script = tmp_path / "deadlock.py"
    script.write_text(
        textwrap.dedent(
            """
            import subprocess, sys, time

            def parent_waits_in_collective():
                time.sleep(600)

            def child_waits_in_barrier():
                time.sleep(600)

            if len(sys.argv) == 1:
                subprocess.Popen([sys.executable, __file__, "child"])
                parent_waits_in_collective()
            else:
                child_waits_in_barrier()
            """
        )
    )
    with pytest.raises(pytest.fail.Exception) as failure:
        run_command([sys.executable, str(script)], tmp_path, timeout=4)
    message = str(failure.value)
    assert "HANG" in message
    assert "parent_waits_in_collective" in message
    assert "child_waits_in_barrier" in message  # the re-launched process's stack too


def test_run_command_reports_a_failing_command(tmp_path):
    with pytest.raises(pytest.fail.Exception, match="exit 3"):
        run_command([sys.executable, "-c", "raise SystemExit(3)"], tmp_path, timeout=30)
