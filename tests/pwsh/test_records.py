"""Rich records keep PowerShell's property names beside hvmagic's Python attributes.

PowerShell reads the same record's properties in the same session (``$e.CategoryInfo.Category``,
``$e.InvocationInfo.MyCommand``, ``$cred.UserName``) and hvmagic must answer the same through
``record["Name"]`` and ``record.Name``.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from hvmagic import display
from hvmagic.clixml.values import ErrorRecord, PSCredential, SecureString
from hvmagic.frames import to_dataframe
from hvmagic.secrets import redact

ERROR_SCRIPT = (
    "$Error.Clear(); function Get-Nested { Get-ChildItem -Path /hvm/records/missing }; "
    "Get-Nested; $e = $Error[0]; "
    "[ordered]@{ Category = \"$($e.CategoryInfo.Category)\"; "
    "Activity = $e.CategoryInfo.Activity; Reason = $e.CategoryInfo.Reason; "
    "TargetName = $e.CategoryInfo.TargetName; TargetType = $e.CategoryInfo.TargetType; "
    "CategoryText = $e.CategoryInfo.ToString(); MyCommand = \"$($e.InvocationInfo.MyCommand)\"; "
    "InvocationName = $e.InvocationInfo.InvocationName; "
    "Line = $e.InvocationInfo.ScriptLineNumber; Offset = $e.InvocationInfo.OffsetInLine "
    "} | ConvertTo-Json -Compress"
)


def test_error_record_reads_with_powershells_names(shared_pwsh_session: Any) -> None:
    result = shared_pwsh_session.run(ERROR_SCRIPT)
    own = json.loads(result.output[-1])
    record = result.errors[0]
    assert isinstance(record, ErrorRecord)
    info = record["CategoryInfo"]
    assert "CategoryInfo" in record and record.CategoryInfo == info
    assert {
        "Category": str(info["Category"]), "Activity": info["Activity"],
        "Reason": info["Reason"], "TargetName": info["TargetName"],
        "TargetType": info["TargetType"], "CategoryText": str(info),
    } == {k: own[k] for k in ("Category", "Activity", "Reason", "TargetName", "TargetType",
                              "CategoryText")}
    invocation = record.InvocationInfo
    assert str(invocation.MyCommand) == own["MyCommand"]
    assert invocation["InvocationName"] == own["InvocationName"]
    assert (invocation.ScriptLineNumber, invocation.OffsetInLine) == (own["Line"], own["Offset"])
    # the Python attributes agree with PowerShell's names
    assert record.category == own["Category"] and record.category_info == own["CategoryText"]
    with pytest.raises(AttributeError):
        _ = record.NoSuchProperty


def test_flattened_invocation_info_is_rebuilt() -> None:
    # Windows PowerShell sends InvocationInfo flattened (SerializeExtendedInfo) as
    # InvocationInfo_* properties; the record still answers InvocationInfo by name
    record = ErrorRecord({
        "InvocationInfo_MyCommand": "Get-Item", "InvocationInfo_ScriptLineNumber": 3,
        "ErrorCategory_Category": 13, "ErrorCategory_TargetName": "x",
        "ErrorCategory_Reason": "ItemNotFoundException",
    })
    assert record.InvocationInfo.MyCommand == "Get-Item"
    assert record["InvocationInfo"]["ScriptLineNumber"] == 3
    assert str(record.CategoryInfo.Category) == "ObjectNotFound"
    assert "InvocationInfo" in record and "Nothing" not in record


def test_credential_from_powershell_reads_like_a_psobject(shared_pwsh_session: Any) -> None:
    result = shared_pwsh_session.run(
        "$c = [pscredential]::new('CORP\\svc', (ConvertTo-SecureString 'Hunter2!x' "
        "-AsPlainText -Force)); $c; $c.UserName; ,@($c.PSObject.Properties.Name)"
    )
    cred, own_user, own_names = result.output[0], result.output[1], result.output[2]
    assert isinstance(cred, PSCredential)
    assert cred["UserName"] == cred.UserName == own_user
    assert list(cred) == own_names == list(cred.keys())
    assert isinstance(cred["Password"], SecureString) and cred.Password is cred["Password"]
    # masked in every rendering, unpicklable, redacted in recordings
    texts = [repr(cred), str(cred), repr(cred["Password"]), str(result),
             to_dataframe([cred]).to_string(), display.render_text_output([cred])["text/plain"],
             to_dataframe([{"c": cred}]).to_html()]
    assert all("Hunter2" not in text for text in texts)
    with pytest.raises(TypeError):
        pickle.dumps(cred)
    recorded = redact(cred)
    assert "Hunter2" not in repr(recorded)
    assert not isinstance(recorded, PSCredential) or not recorded.password.has_plaintext
