"""hvmagic.clixml against real captures: ../shared/corpus/clixml/*.xml (Windows PowerShell 5.1
and 7 serializer output) and the PSRP messages inside the pypsrp WinRM recordings.

psrpcore's deserializer is the oracle: for every file/message both decoders must produce the
same property names and equal values after :func:`_normal` (the only normalisations and the
reasons are documented there)."""

from __future__ import annotations

import base64
import datetime as dt
import re
import struct
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hvmagic.clixml import (
    ErrorRecord,
    InformationalRecord,
    InformationRecord,
    ProgressRecord,
    PSDateTime,
    PSEnum,
    PSObject,
    PSVersion,
    loads,
    loads_fragment,
    strip_deserialized,
)
from tests.conftest import CORPUS

pytestmark = pytest.mark.corpus



def _corpus_files(folder: str, pattern: str) -> list[Any]:
    """The corpus files to parametrize over, found where conftest finds ../shared (so
    ``HVMAGIC_SHARED`` counts); a missing corpus is one visible skip with the reason, never an
    empty parameter set that passes unseen, and a corpus folder without files is a failure."""
    if not CORPUS.is_dir():
        reason = f"real-capture corpus not found at {CORPUS} (set HVMAGIC_SHARED to ../shared)"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="no-corpus")]
    files = sorted((CORPUS / folder).glob(pattern))
    if not files:
        return [pytest.param(CORPUS / folder / pattern, id="empty-corpus")]  # fails: no file
    return files


def _file_id(path: Any) -> str:
    return path.name.split("__")[-1] if isinstance(path, Path) else str(path)


XML_FILES = _corpus_files("clixml", "*.xml")
RECORDINGS = _corpus_files("psrp-recordings", "*.yml")


def _load(corpus_dir: Path, short: str) -> list[Any]:
    return loads((corpus_dir / "clixml" / f"microsoft__CSS-Exchange__{short}.xml").read_bytes())


# --- PSRP recordings: base64 blobs of 21-byte-header fragments (MS-PSRP 2.2.4) ----------------

_BLOB = re.compile(
    r"<(rsp:Stream|creationXml|rsp:Arguments)\b[^>]*>([A-Za-z0-9+/=\s]+)</\1>"
)
PIPELINE_OUTPUT = 0x00041004
ERROR_RECORD = 0x00041005
DEBUG_RECORD = 0x00041007
VERBOSE_RECORD = 0x00041008
WARNING_RECORD = 0x00041009
PROGRESS_RECORD = 0x00041010
INFORMATION_RECORD = 0x00041011


def psrp_messages(path: Path) -> list[tuple[str, int, bytes]]:
    """(recording key, message type, payload) of every complete message, in order."""
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    result = []
    for key in ("messages", "messages-py26"):
        pending: dict[tuple[str, int], bytes] = {}
        for exchange in data.get(key) or []:
            for side in ("request", "response"):
                for _, blob in _BLOB.findall(str(exchange.get(side))):
                    raw = base64.b64decode("".join(blob.split()))
                    while raw:
                        object_id, _fragment_id, flags, length = struct.unpack(">QQBI", raw[:21])
                        body, raw = raw[21:21 + length], raw[21 + length:]
                        pending[(side, object_id)] = pending.get((side, object_id), b"") + body
                        if flags & 0x2:  # end fragment
                            message = pending.pop((side, object_id))
                            _destination, message_type = struct.unpack("<II", message[:8])
                            result.append((key, message_type, message[40:]))
    return result


# --- every file decodes ---------------------------------------------------------------------

@pytest.mark.parametrize("path", XML_FILES, ids=_file_id)
def test_every_corpus_file_decodes(corpus_dir: Path, path: Path) -> None:
    text = path.read_bytes()
    values = loads(text)
    assert len(values) == len(ET.fromstring(text))  # one value per top-level element
    assert loads(text.decode("utf-8")) == values  # str input gives the same values


@pytest.mark.parametrize("path", RECORDINGS, ids=_file_id)
def test_every_recorded_psrp_message_decodes(corpus_dir: Path, path: Path) -> None:
    messages = psrp_messages(path)
    assert messages
    decoded = [loads_fragment(payload) for _, _, payload in messages if payload]
    assert len(decoded) == sum(1 for _, _, p in messages if p)


# --- concrete values from real captures --------------------------------------------------------

def test_spooler_service(corpus_dir: Path) -> None:
    (svc,) = _load(corpus_dir, "PrintSpoolerSetToAutomaticAndRunning")
    assert svc.type_name == "System.ServiceProcess.ServiceController" and str(svc) == "spooler"
    assert isinstance(svc["Status"], PSEnum)
    assert (str(svc["Status"]), int(svc["Status"])) == ("Running", 4)
    assert (str(svc["StartType"]), int(svc["StartType"])) == ("Automatic", 2)
    # a flags enum keeps PowerShell's text
    assert str(svc["ServiceType"]) == "Win32OwnProcess, InteractiveProcess"
    assert int(svc["ServiceType"]) == 272
    deps = svc["DependentServices"]
    assert [str(d) for d in deps] == ["Fax"] and deps[0]["Status"] == "Stopped"
    assert [str(s) for s in svc["ServicesDependedOn"]] == ["RPCSS", "http"]
    # <Ref N="RequiredServices"> aliases the ServicesDependedOn list object
    assert svc["RequiredServices"] is svc["ServicesDependedOn"]
    assert deps[0]["RequiredServices"] is deps[0]["ServicesDependedOn"]
    assert deps[0]["ServicesDependedOn"] == ["RpcSs", "TapiSrv", "Spooler"]
    assert svc["CanStop"] is True and svc["Site"] is None


def test_win32_operating_system(corpus_dir: Path) -> None:
    (os_,) = _load(corpus_dir, "E19_OS_Win32_OperatingSystem")
    assert os_.type_name == "System.Management.ManagementObject#root\\cimv2\\Win32_OperatingSystem"
    assert len(os_.type_names) == 13
    assert os_["Caption"] == "Microsoft Windows Server 2019 Datacenter"
    assert os_["CurrentTimeZone"] == -420  # I16
    assert os_["MaxNumberOfProcesses"] == 4294967295  # U32
    assert os_["BuildNumber"] == "17763" and os_["CSDVersion"] is None
    assert os_["__DERIVATION"][0] == "CIM_OperatingSystem"
    assert os_["LastBootUpTime"] == "20210929115907.020592-420"  # WMI keeps its own format


def test_win_event_record(corpus_dir: Path) -> None:
    (event,) = _load(corpus_dir, "E19_OS_GetWinEventOldestApplication")
    stamp = event["TimeCreated"]
    assert isinstance(stamp, PSDateTime)
    assert stamp == dt.datetime(2024, 6, 18, 9, 42, 6, 8110, tzinfo=dt.timezone.utc)
    assert stamp.utcoffset() == dt.timedelta(hours=-4)
    assert event["Id"] == 16028 and event["Level"] == 4 and event["Keywords"] == 36028797018963968
    assert event["KeywordsDisplayNames"] == ["Classic"] and event["MatchedQueryIds"] == []
    assert event["Message"].startswith("A forced configuration update for Microsoft.Exchan")
    assert "  " in event["Message"]  # double space kept from <MS>


def test_processor_tnref_and_refids(corpus_dir: Path) -> None:
    first, second = _load(corpus_dir, "E19_Hardware_Physical_Win32_Processor")
    assert first["DeviceID"] == "CPU0" and second["DeviceID"] == "CPU1"
    assert second.type_names is first.type_names
    assert first["Name"] == "Intel(R) Xeon(R) CPU E5-2430 0 @ 2.20GHz"
    assert first["MaxClockSpeed"] == 2201 and first["L3CacheSize"] == 15360


def test_file_version_info(corpus_dir: Path) -> None:
    (info,) = _load(corpus_dir, "E19_Exchange_IIS_GetVersionInformationCachTokn")
    assert info["FileVersionRaw"] == PSVersion(10, 0, 17763, 0)
    assert info["LegalCopyright"] == "© Microsoft Corporation. All rights reserved."
    assert "\r\n" in info.to_string  # _x000D__x000A_ escapes decoded
    assert info["FileName"] == "C:\\windows\\System32\\inetsrv\\cachtokn.dll"


def test_exchange_server_version_binary_blob(corpus_dir: Path) -> None:
    (version,) = _load(corpus_dir, "E19CU11AdminDisplayVersion")
    assert (version["Major"], version["Minor"], version["Build"], version["Revision"]) == (
        15, 2, 986, 5)
    blob = version["SerializationData"]
    assert isinstance(blob, bytes) and len(blob) == 302 and blob[:5] == b"\x00\x01\x00\x00\x00"


def test_time_zone_registry_bytes(corpus_dir: Path) -> None:
    (tz,) = _load(corpus_dir, "E19_OS_GetTimeZoneInformationRegistrySettings")
    assert tz["TimeZoneKeyName"] == "Pacific Standard Time"
    assert tz["StandardStart"] == [0, 0, 11, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert tz["ActionsToTake"] == []


def test_tls_cipher_suites_list_root(corpus_dir: Path) -> None:
    (suites,) = _load(corpus_dir, "GetTlsCipherSuite")
    assert isinstance(suites, list) and len(suites) == 8
    assert suites[0]["Name"] == "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
    assert suites[0]["Protocols"] == [771, 65277] and suites[0]["CipherSuite"] == 49196


def test_local_group_members_enum(corpus_dir: Path) -> None:
    members = _load(corpus_dir, "E19_Exchange_GetLocalGroupMember2")
    assert [str(m["PrincipalSource"]) for m in members] == [
        "ActiveDirectory", "ActiveDirectory", "Local"]
    assert members[0]["Name"] == "SOLO\\Domain Admins"
    assert str(members[0]["SID"]) == "S-1-5-21-1281225956-1072373970-2205875210-512"


def test_hashtable_root_and_misc_files(corpus_dir: Path) -> None:
    (table,) = _load(corpus_dir, "E19_Exchange_GetExchangeApplicationConfigurationFileValidation1")
    assert table["EdgeTransport.exe.config"]["Present"] is False
    (fip,) = _load(corpus_dir, "E19_Exchange_GetFIPFSScanEngineVersionState")
    assert fip["HighestVersionNumberDetected"] == 2201010000
    assert len(_load(corpus_dir, "TlsCipherLocalPath")) == 40
    assert _load(corpus_dir, "E19_OS_RemoteRegistryValueInstallationType") == ["Server Core"]
    sites = _load(corpus_dir, "E19_Exchange_GetExchangeWebSitesFromAd")
    assert sites[0] == ["Default Web Site"]
    (reboot,) = _load(corpus_dir, "E19_OS_GetServerRebootPending1")
    assert reboot["PendingReboot"] is True and reboot["PendingRebootLocations"] == []
    (proxy,) = _load(corpus_dir, "E15_OS_GetHttpProxySetting")
    assert proxy["HttpProxy32"]["ByPassList"] == "" and proxy["HttpProxy32"].type_name == (
        "System.Management.Automation.PSCustomObject")


# --- records in the pypsrp recordings -----------------------------------------------------------

def _stream_messages(corpus_dir: Path) -> dict[int, bytes]:
    path = corpus_dir / "psrp-recordings" / (
        "jborean93__pypsrp__test_psrp_stream_output_invocation.yml")
    return {t: p for key, t, p in psrp_messages(path) if key == "messages"}


def test_recorded_error_record(corpus_dir: Path) -> None:
    record = loads_fragment(_stream_messages(corpus_dir)[ERROR_RECORD])
    assert isinstance(record, ErrorRecord)
    assert record.message == "error stream"
    assert record.fully_qualified_error_id == "Microsoft.PowerShell.Commands.WriteErrorException"
    assert record.category == "NotSpecified"
    assert record["ErrorCategory_Message"] == (
        "NotSpecified: (:) [Write-Error], WriteErrorException")
    assert record.exception_type == "Microsoft.PowerShell.Commands.WriteErrorException"
    assert record.script_stack_trace == "at <ScriptBlock>, <No file>: line 5"
    assert record["PipelineIterationInfo"] == [0, 0]


def test_recorded_informational_records(corpus_dir: Path) -> None:
    messages = _stream_messages(corpus_dir)
    for message_type, text in ((WARNING_RECORD, "warning stream"),
                               (VERBOSE_RECORD, "verbose stream"),
                               (DEBUG_RECORD, "debug stream")):
        record = loads_fragment(messages[message_type])
        assert isinstance(record, InformationalRecord) and record.message == text


def test_recorded_information_record(corpus_dir: Path) -> None:
    payload = _stream_messages(corpus_dir)[INFORMATION_RECORD]
    record = loads_fragment(payload, as_type=InformationRecord)
    assert isinstance(record, InformationRecord)
    assert record.message_data == "information stream" and record.message == "information stream"
    assert record.source == "Write-Information" and record.tags == []
    assert record.time_generated.tzinfo is not None
    assert record.time_generated.replace(microsecond=0) == dt.datetime(
        2018, 5, 29, 6, 56, 23, tzinfo=dt.timezone.utc)
    assert record["User"] == "WIN-J4RACTT2GQ8\\vagrant" and record["ProcessId"] == 224
    assert type(loads_fragment(payload)) is PSObject  # without the hint: a property bag


def test_recorded_progress_and_output(corpus_dir: Path) -> None:
    messages = _stream_messages(corpus_dir)
    progress = loads_fragment(messages[PROGRESS_RECORD], as_type=ProgressRecord)
    assert isinstance(progress, ProgressRecord)
    assert progress.activity == "Preparing modules for first use."
    assert progress.record_type == "Completed" and progress.percent_complete == -1
    assert progress.status_description == " " and progress.current_operation is None
    assert loads_fragment(messages[PIPELINE_OUTPUT]) == "output stream"


def test_recorded_host_call_and_culture(corpus_dir: Path) -> None:
    path = corpus_dir / "psrp-recordings" / "jborean93__pypsrp__test_psrp_pshost_methods.yml"
    messages = {t: p for _, t, p in psrp_messages(path)}
    call = loads_fragment(messages[0x00041100])
    assert call["ci"] == -100 and str(call["mi"]) == "SetShouldExit" and int(call["mi"]) == 6
    assert call["mp"] == [1]
    culture = loads_fragment(messages[PIPELINE_OUTPUT])
    assert culture["Name"] == "en-US" and culture["LCID"] == 1033


# --- psrpcore as an oracle -------------------------------------------------------------------

def _normal(value: Any, seen: dict[int, int] | None = None) -> Any:
    """Reduce a value from either decoder to plain comparable data.

    Normalisations, each an explained disagreement between the two decoders:
    * psrpcore prefixes ``Deserialized.`` to type names of every complex object it decodes
      (even when the sender did not, as in these Export-Clixml files); hvmagic keeps the names
      as sent. Type names are compared with all ``Deserialized.`` prefixes stripped.
    * psrpcore keeps adapted and extended properties in two lists; hvmagic merges them with
      extended winning (PowerShell's rule). Compared as one name→value mapping built the same way.
    * psrpcore returns enums as a PSInt carrying ToString; hvmagic returns PSEnum. Both become
      ("enum", number, name).
    * psrpcore's string/int/list subclasses (PSString, PSInt, PSList…) compare as their builtin.
    * psrpcore's PSDateTime has ``nanosecond``; hvmagic's ``tick_remainder``: both are reduced
      to (datetime, ticks below the microsecond).
    * A ``<Ref>`` already visited becomes ("ref", n) so shared objects compare without recursion.
    """
    seen = {} if seen is None else seen
    if value is None or isinstance(value, (bool, float, Decimal, bytes)):
        return value
    if isinstance(value, dt.datetime):
        ticks = getattr(value, "tick_remainder", None)
        if ticks is None:
            ticks = getattr(value, "nanosecond", 0) // 100
        return ("dt", dt.datetime(value.year, value.month, value.day, value.hour, value.minute,
                                  value.second, value.microsecond, value.tzinfo), ticks)
    ps = getattr(value, "PSObject", None)  # psrpcore metadata
    if isinstance(value, PSEnum):
        return ("enum", int(value), str(value))
    if isinstance(value, int):
        names = list(getattr(ps, "type_names", []) or [])
        if ps is not None and any(n.endswith("System.Enum") for n in names):
            return ("enum", int(value), ps.to_string)
        return int(value)
    if isinstance(value, str):
        return str(value)
    if id(value) in seen:
        return ("ref", seen[id(value)])
    seen[id(value)] = len(seen)
    if isinstance(value, PSVersion) or type(value).__name__ == "PSVersion":
        return ("version", str(value))
    if isinstance(value, list):
        return [_normal(v, seen) for v in value]
    if isinstance(value, dict):
        return {_normal(k, seen): _normal(v, seen) for k, v in value.items()}
    if isinstance(value, PSObject):
        # psrpcore's order below (adapted, then extended), so that ("ref", n) numbers agree;
        # the order itself is not compared (dicts)
        order = [k for k in value.adapted if k in value] + [
            k for k in value if k not in value.adapted]
        return ("obj", [strip_deserialized(n) for n in value.type_names],
                {k: _normal(value[k], seen) for k in order})
    if ps is not None:
        props: dict[str, Any] = {}
        for prop in list(ps.adapted_properties) + list(ps.extended_properties):
            props[prop.name] = _normal(value[prop.name], seen)
        return ("obj", [strip_deserialized(n) for n in ps.type_names], props)
    return value


def test_psrpcore_oracle_agrees_on_every_corpus_file(corpus_dir: Path) -> None:
    psrpcore_types = pytest.importorskip("psrpcore.types")
    checked = 0
    for path in XML_FILES:
        text = path.read_text(encoding="utf-8")
        ours = loads(text)
        theirs = psrpcore_types.deserialize_clixml(text, None)
        assert len(ours) == len(theirs), path.name
        for mine, other in zip(ours, theirs, strict=True):
            assert _normal(mine) == _normal(other), path.name
            checked += 1
    assert checked >= 60


def test_psrpcore_oracle_agrees_on_every_recorded_message(corpus_dir: Path) -> None:
    psrpcore_types = pytest.importorskip("psrpcore.types")
    checked = 0
    for path in RECORDINGS:
        for _, _, payload in psrp_messages(path):
            if not payload:
                continue  # END_OF_PIPELINE_INPUT carries no object
            ours = loads_fragment(payload)
            theirs = psrpcore_types.deserialize(ET.fromstring(payload.decode("utf-8-sig")), None)
            if isinstance(ours, (ErrorRecord, InformationalRecord)):
                # Explained disagreement: psrpcore rehydrates these records into its own
                # classes with .NET property names (Message, InvocationInfo, CategoryInfo),
                # while hvmagic keeps the serialized members (InformationalRecord_Message,
                # InvocationInfo_*, ErrorCategory_*) and derives the same facts from them.
                assert ours.type_names == theirs.PSObject.type_names
                if isinstance(ours, ErrorRecord):
                    assert ours.fully_qualified_error_id == theirs.FullyQualifiedErrorId
                    # psrpcore also attaches SerializedRemoteInvocationInfo to the exception
                    exception = _normal(theirs.Exception)
                    exception[2].pop("SerializedRemoteInvocationInfo", None)
                    assert _normal(ours["Exception"]) == exception
                    assert ours.message == theirs.Exception.Message
                    assert ours.script_stack_trace == theirs.ScriptStackTrace
                else:
                    assert ours.message == theirs.Message
            else:
                assert _normal(ours) == _normal(theirs)
            checked += 1
    assert checked >= 60
