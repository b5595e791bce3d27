"""The judge itself: the PowerShell found is real and answers as PowerShell."""

from __future__ import annotations

from typing import Any


def test_the_judge_is_real_powershell(ask_pwsh: Any, shared_pwsh_session: Any) -> None:
    own = ask_pwsh("$PSVersionTable.PSVersion.ToString(); $PSVersionTable.PSEdition", as_json=True)
    seen = shared_pwsh_session.run(
        "$PSVersionTable.PSVersion.ToString(); $PSVersionTable.PSEdition"
    ).output
    assert seen == own
    assert own[1] == "Core"
