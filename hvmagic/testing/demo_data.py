# ruff: noqa: E501  (data tables read better one record per line)
"""The simulated guest's inventory: plausible Windows Server 2022 data, clearly labelled.

Everything here is invented for the simulation (no capture of a real machine). The computer is
called ``SIMULATED-GUEST``; ``Get-ComputerInfo`` carries a banner saying so.
"""

from __future__ import annotations

# Name | DisplayName | Status (R/S) | StartType (A=Automatic, D=Automatic (delayed), M=Manual,
# X=Disabled) | ServiceType (O=Win32OwnProcess, S=Win32ShareProcess, K=KernelDriver) | depends on
SERVICES = """
AppIDSvc|Application Identity|S|M|S|RpcSs,CryptSvc,AppID
Appinfo|Application Information|R|M|S|RpcSs,ProfSvc
AppMgmt|Application Management|S|M|S|
AppReadiness|App Readiness|S|M|S|
AppXSvc|AppX Deployment Service (AppXSVC)|S|M|S|rpcss,staterepository
AudioEndpointBuilder|Windows Audio Endpoint Builder|S|M|S|
Audiosrv|Windows Audio|S|M|S|AudioEndpointBuilder,RpcSs
BFE|Base Filtering Engine|R|A|S|RpcSs
BITS|Background Intelligent Transfer Service|S|M|S|RpcSs
BrokerInfrastructure|Background Tasks Infrastructure Service|R|A|S|DcomLaunch,RpcEptMapper,RpcSs
CDPSvc|Connected Devices Platform Service|R|D|S|ncbservice,RpcSS,Tcpip
CertPropSvc|Certificate Propagation|S|M|S|RpcSs
ClipSVC|Client License Service (ClipSVC)|S|M|S|rpcss
COMSysApp|COM+ System Application|S|M|O|SENS,EventSystem,rpcss
CoreMessagingRegistrar|CoreMessaging|R|A|S|rpcss
CryptSvc|Cryptographic Services|R|A|S|RpcSs
DcomLaunch|DCOM Server Process Launcher|R|A|S|
defragsvc|Optimize drives|S|M|O|RPCSS
DeviceAssociationService|Device Association Service|S|M|S|
DeviceInstall|Device Install Service|S|M|S|
Dhcp|DHCP Client|R|A|S|NSI,Afd
DiagTrack|Connected User Experiences and Telemetry|R|A|O|RpcSs
DispBrokerDesktopSvc|Display Policy Service|R|D|S|
DmEnrollmentSvc|Device Management Enrollment Service|S|M|S|
dmwappushservice|Device Management Wireless Application Protocol (WAP) Push message Routing Service|S|M|S|rpcss
Dnscache|DNS Client|R|A|S|nsi,Tcpip
DPS|Diagnostic Policy Service|R|A|S|
DsmSvc|Device Setup Manager|S|M|S|RpcSs
DsSvc|Data Sharing Service|S|M|S|
Eaphost|Extensible Authentication Protocol|S|M|S|RPCSS,KeyIso
edgeupdate|Microsoft Edge Update Service (edgeupdate)|S|D|O|RpcSs
EFS|Encrypting File System (EFS)|S|M|S|RPCSS
EventLog|Windows Event Log|R|A|S|
EventSystem|COM+ Event System|R|A|S|rpcss
FontCache|Windows Font Cache Service|R|A|S|
gpsvc|Group Policy Client|R|A|S|RPCSS,Mup
hidserv|Human Interface Device Service|S|M|S|
IKEEXT|IKE and AuthIP IPsec Keying Modules|S|M|S|BFE,nsi
iphlpsvc|IP Helper|R|A|S|RpcSS,Tcpip,nsi,WinHttpAutoProxySvc
KeyIso|CNG Key Isolation|R|M|S|RpcSs
KPSSVC|KDC Proxy Server service (KPS)|S|M|S|rpcss,http
KtmRm|KtmRm for Distributed Transaction Coordinator|S|M|S|RPCSS,SamSS
LanmanServer|Server|R|A|S|SamSS,Srv2
LanmanWorkstation|Workstation|R|A|S|Bowser,MRxSmb20,NSI
lmhosts|TCP/IP NetBIOS Helper|R|M|S|NetBT,Afd
LSM|Local Session Manager|R|A|S|RpcEptMapper,DcomLaunch,RpcSs
MapsBroker|Downloaded Maps Manager|S|D|S|rpcss
MpsSvc|Windows Defender Firewall|R|A|S|mpsdrv,bfe
MSDTC|Distributed Transaction Coordinator|R|D|O|RPCSS,SamSS
MSiSCSI|Microsoft iSCSI Initiator Service|S|M|S|
msiserver|Windows Installer|S|M|S|rpcss
NcaSvc|Network Connectivity Assistant|S|M|S|BFE,dnscache,NSI,iphlpsvc
Netlogon|Netlogon|S|M|S|LanmanWorkstation
Netman|Network Connections|S|M|S|rpcss,nsi
netprofm|Network List Service|R|M|S|RpcSs,nlasvc
NetSetupSvc|Network Setup Service|S|M|S|
NetTcpPortSharing|Net.Tcp Port Sharing Service|S|X|S|
NlaSvc|Network Location Awareness|R|A|S|NSI,RpcSs,TcpIp,Dhcp,Eventlog
nsi|Network Store Interface Service|R|A|S|rpcss,nsiproxy
PcaSvc|Program Compatibility Assistant Service|S|M|S|RpcSs
PerfHost|Performance Counter DLL Host|S|M|O|RPCSS
pla|Performance Logs & Alerts|S|M|S|RPCSS
PlugPlay|Plug and Play|R|M|S|
PolicyAgent|IPsec Policy Agent|S|M|S|Tcpip,bfe
Power|Power|R|A|S|
ProfSvc|User Profile Service|R|A|S|RpcSs
RasMan|Remote Access Connection Manager|S|M|S|SstpSvc
RemoteRegistry|Remote Registry|S|A|S|RPCSS
RpcEptMapper|RPC Endpoint Mapper|R|A|S|
RpcSs|Remote Procedure Call (RPC)|R|A|S|RpcEptMapper,DcomLaunch
SamSs|Security Accounts Manager|R|A|S|RPCSS
Schedule|Task Scheduler|R|A|S|RPCSS,SystemEventsBroker
SENS|System Event Notification Service|R|A|S|EventSystem
SessionEnv|Remote Desktop Configuration|R|M|S|RPCSS,LanmanWorkstation
ShellHWDetection|Shell Hardware Detection|R|A|S|RpcSs
sppsvc|Software Protection|S|D|O|RpcSs
SstpSvc|Secure Socket Tunneling Protocol Service|S|M|S|
StateRepository|State Repository Service|R|M|S|rpcss
stisvc|Windows Image Acquisition (WIA)|S|M|O|RpcSs
StorSvc|Storage Service|R|M|S|
SysMain|SysMain|S|X|S|rpcss
SystemEventsBroker|System Events Broker|R|A|S|RpcEptMapper,RpcSs
TermService|Remote Desktop Services|R|M|S|RPCSS
Themes|Themes|R|A|S|
TimeBrokerSvc|Time Broker|R|M|S|RpcSs
TrkWks|Distributed Link Tracking Client|R|A|S|RpcSs
TrustedInstaller|Windows Modules Installer|S|M|O|rpcss
tzautoupdate|Auto Time Zone Updater|S|X|S|
UALSVC|User Access Logging Service|R|D|S|RpcSs,WinMgmt
UmRdpService|Remote Desktop Services UserMode Port Redirector|R|M|S|TermService,RDPDR
UserManager|User Manager|R|A|S|RpcSs,ProfSvc
UsoSvc|Update Orchestrator Service|R|D|S|rpcss
VaultSvc|Credential Manager|R|M|O|rpcss
vds|Virtual Disk|S|M|O|rpcss
vmicguestinterface|Hyper-V Guest Service Interface|S|M|S|
vmicheartbeat|Hyper-V Heartbeat Service|R|M|S|
vmickvpexchange|Hyper-V Data Exchange Service|R|M|S|
vmicrdv|Hyper-V Remote Desktop Virtualization Service|R|M|S|
vmicshutdown|Hyper-V Guest Shutdown Service|R|M|S|
vmictimesync|Hyper-V Time Synchronization Service|R|M|S|VmGid
vmicvmsession|Hyper-V PowerShell Direct Service|R|M|S|
vmicvss|Hyper-V Volume Shadow Copy Requestor|R|M|S|
VSS|Volume Shadow Copy|S|M|O|RPCSS
W32Time|Windows Time|R|M|S|
WaaSMedicSvc|Windows Update Medic Service|S|M|S|rpcss
WdiServiceHost|Diagnostic Service Host|S|M|S|
WdiSystemHost|Diagnostic System Host|S|M|S|
WdNisSvc|Microsoft Defender Antivirus Network Inspection Service|R|M|O|WinDefend
Wecsvc|Windows Event Collector|S|M|S|HTTP,Eventlog
WerSvc|Windows Error Reporting Service|S|M|S|
WinDefend|Microsoft Defender Antivirus Service|R|A|O|RpcSs
WinHttpAutoProxySvc|WinHTTP Web Proxy Auto-Discovery Service|R|M|S|Dhcp
Winmgmt|Windows Management Instrumentation|R|A|S|RPCSS
WinRM|Windows Remote Management (WS-Management)|R|A|S|RPCSS,HTTP
wisvc|Windows Insider Service|S|M|S|rpcss
wlidsvc|Microsoft Account Sign-in Assistant|S|M|S|RpcSs
wmiApSrv|WMI Performance Adapter|S|M|O|
WPDBusEnum|Portable Device Enumerator Service|S|M|S|rpcss
WpnService|Windows Push Notifications System Service|R|A|S|rpcss
WSearch|Windows Search|S|X|O|RPCSS
wuauserv|Windows Update|S|M|S|rpcss
"""

# Shown after the DSC runbook installs Web-Server (the sim adds them when the feature lands).
WEB_SERVER_SERVICES = """
W3SVC|World Wide Web Publishing Service|R|A|S|WAS,HTTP
WAS|Windows Process Activation Service|R|M|S|RPCSS
IISADMIN|IIS Admin Service|S|X|O|RPCSS
"""

# Name | Id | Handles | CPU s | WS MB | PM MB | NPM KB | SI | Path | Company | Description
PROCESSES = """
Idle|0|0|0||0|0|0|0||||
System|4|3120|412.84|0.14|0.19|0|0||||
Registry|92|0|1.2|54.3|9.8|16|0||||
smss|368|53|0.11|1.2|1.1|5|0|C:\\Windows\\System32\\smss.exe|Microsoft Corporation|Windows Session Manager
csrss|476|512|3.41|5.7|1.9|13|0|C:\\Windows\\System32\\csrss.exe|Microsoft Corporation|Client Server Runtime Process
wininit|552|163|0.16|6.9|1.5|11|0|C:\\Windows\\System32\\wininit.exe|Microsoft Corporation|Windows Start-Up Application
services|628|702|11.72|10.4|5.2|15|0|C:\\Windows\\System32\\services.exe|Microsoft Corporation|Services and Controller app
lsass|648|1421|18.9|23.8|8.1|25|0|C:\\Windows\\System32\\lsass.exe|Microsoft Corporation|Local Security Authority Process
svchost|768|1186|22.4|27.1|9.6|18|0|C:\\Windows\\System32\\svchost.exe|Microsoft Corporation|Host Process for Windows Services
svchost|832|945|14.02|13.3|7.4|16|0|C:\\Windows\\System32\\svchost.exe|Microsoft Corporation|Host Process for Windows Services
svchost|904|1702|35.66|39.9|18.2|31|0|C:\\Windows\\System32\\svchost.exe|Microsoft Corporation|Host Process for Windows Services
svchost|1088|430|3.1|11.2|3.4|12|0|C:\\Windows\\System32\\svchost.exe|Microsoft Corporation|Host Process for Windows Services
svchost|1236|622|8.75|17.8|6.6|14|0|C:\\Windows\\System32\\svchost.exe|Microsoft Corporation|Host Process for Windows Services
svchost|1452|318|1.97|8.9|2.8|10|0|C:\\Windows\\System32\\svchost.exe|Microsoft Corporation|Host Process for Windows Services
svchost|1620|512|6.3|12.6|4.9|13|0|C:\\Windows\\System32\\svchost.exe|Microsoft Corporation|Host Process for Windows Services
spoolsv|2044|451|1.23|15.8|5.7|18|0|C:\\Windows\\System32\\spoolsv.exe|Microsoft Corporation|Spooler SubSystem App
MsMpEng|2376|758|186.5|212.6|236.1|54|0|C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24090.11-0\\MsMpEng.exe|Microsoft Corporation|Antimalware Service Executable
WmiPrvSE|2740|362|7.8|19.6|9.1|14|0|C:\\Windows\\System32\\wbem\\WmiPrvSE.exe|Microsoft Corporation|WMI Provider Host
vmms_guest_helper|2912|0|0|0|0|0|0||||
dwm|3004|891|12.3|58.2|31.4|22|1|C:\\Windows\\System32\\dwm.exe|Microsoft Corporation|Desktop Window Manager
winlogon|3120|255|0.38|8.3|2.7|11|1|C:\\Windows\\System32\\winlogon.exe|Microsoft Corporation|Windows Logon Application
csrss|3188|340|2.2|5.1|1.8|12|1|C:\\Windows\\System32\\csrss.exe|Microsoft Corporation|Client Server Runtime Process
sihost|3452|420|1.7|24.1|6.3|17|1|C:\\Windows\\System32\\sihost.exe|Microsoft Corporation|Shell Infrastructure Host
taskhostw|3520|287|0.9|13.6|5.1|14|1|C:\\Windows\\System32\\taskhostw.exe|Microsoft Corporation|Host Process for Windows Tasks
explorer|3748|1544|21.8|96.3|38.5|48|1|C:\\Windows\\explorer.exe|Microsoft Corporation|Windows Explorer
ServerManager|4016|612|9.4|131.7|98.2|40|1|C:\\Windows\\system32\\ServerManager.exe|Microsoft Corporation|Server Manager
powershell|4412|588|2.91|71.4|54.9|26|0|C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe|Microsoft Corporation|Windows PowerShell
conhost|4428|122|0.05|11.8|6.4|9|0|C:\\Windows\\System32\\conhost.exe|Microsoft Corporation|Console Window Host
vmicsvc_helper|4530|0|0|0|0|0|0||||
"""

# HotFixID | Description | InstalledOn (days ago)
HOTFIXES = """
KB5044281|Security Update|19
KB5044025|Update|19
KB5043050|Update|47
KB5042881|Security Update|54
KB5041160|Security Update|82
KB5040437|Security Update|110
KB5039889|Update|138
KB5034439|Security Update|291
KB5012170|Security Update|402
KB5011497|Update|420
"""

# LogName | Level | ProviderName | Id | hours ago | Message
EVENTS = """
System|2|Service Control Manager|7000|0.7|The Remote Registry service failed to start due to the following error: %%1058
System|2|Service Control Manager|7001|0.7|The Network Connectivity Assistant service depends on the IP Helper service which failed to start because of the following error: The dependency service or group failed to start.
System|2|Microsoft-Windows-DistributedCOM|10016|1.9|The application-specific permission settings do not grant Local Activation permission for the COM Server application with CLSID {2593F8B9-4EAF-457C-B68A-50F6B8EA6B54} and APPID {15C20B67-12E7-4BB6-92BB-7AFF07997402} to the user SIMULATED-GUEST\\Administrator SID (S-1-5-21-1004336348-1177238915-682003330-500) from address LocalHost (Using LRPC) running in the application container Unavailable SID (Unavailable). This security permission can be modified using the Component Services administrative tool.
System|2|Service Control Manager|7031|3.2|The Windows Update service terminated unexpectedly.  It has done this 1 time(s).  The following corrective action will be taken in 120000 milliseconds: Restart the service.
System|2|Microsoft-Windows-WindowsUpdateClient|20|3.3|Installation Failure: Windows failed to install the following update with error 0x800f0922: 2024-10 Cumulative Update for Microsoft server operating system version 21H2 for x64-based Systems (KB5044281).
System|3|Microsoft-Windows-Time-Service|134|5.0|NtpClient was unable to set a manual peer to use as a time source because of DNS resolution error on 'time.windows.com,0x8'. NtpClient will try again in 15 minutes and double the reattempt interval thereafter. The error was: No such host is known. (0x80072AF9)
System|2|Schannel|36874|6.4|An TLS 1.2 connection request was received from a remote client application, but none of the cipher suites supported by the client application are supported by the server. The TLS connection request has failed.
System|3|Microsoft-Windows-Kernel-PnP|219|8.1|The driver \\Driver\\WudfRd failed to load for the device SWD\\WPDBUSENUM\\_??_USBSTOR#Disk&Ven_Msft&Prod_Virtual_Disk.
System|1|Microsoft-Windows-Kernel-Power|41|11.5|The system has rebooted without cleanly shutting down first. This error could be caused if the system stopped responding, crashed, or lost power unexpectedly.
System|2|EventLog|6008|11.5|The previous system shutdown at 02:14:07 on the simulated guest was unexpected.
System|3|disk|153|14.2|The IO operation at logical block address 0x1a2b3c for Disk 0 (PDO name: \\Device\\00000032) was retried.
System|4|Microsoft-Windows-Kernel-General|12|11.4|The operating system started at system time (simulated).
System|4|Service Control Manager|7036|0.6|The Hyper-V PowerShell Direct Service service entered the running state.
System|2|Microsoft-Windows-GroupPolicy|1129|17.8|The processing of Group Policy failed because of lack of network connectivity to a domain controller. This may be a transient condition. A success message would be generated once the machine gets connected to the domain controller and Group Policy has successfully processed.
System|2|Service Control Manager|7023|21.0|The Diagnostic Policy Service service terminated with the following error: The device is not ready.
Application|2|Application Error|1000|2.6|Faulting application name: ContosoAgent.exe, version: 3.2.1.0, time stamp: 0x6517a2c4 Faulting module name: ntdll.dll, version: 10.0.20348.2849, exception code: 0xc0000374, fault offset: 0x00000000000ff1a9, faulting process id: 0x1f3c.
Application|2|.NET Runtime|1026|2.6|Application: ContosoAgent.exe Framework Version: v4.0.30319 Description: The process was terminated due to an unhandled exception. Exception Info: System.IO.FileNotFoundException at ContosoAgent.Program.Main(System.String[])
Application|2|Microsoft-Windows-Perflib|1008|9.7|The Open Procedure for service "BITS" in DLL "C:\\Windows\\System32\\bitsperf.dll" failed with error code The system cannot find the file specified.. Performance data for this service will not be available.
Application|3|Microsoft-Windows-User Profiles Service|1530|12.0|Windows detected your registry file is still in use by other applications or services. The file will be unloaded now.
Application|4|MsiInstaller|11707|30.5|Product: Contoso Monitoring Agent -- Installation completed successfully.
Application|2|Application Hang|1002|26.0|The program ServerManager.exe version 10.0.20348.1 stopped interacting with Windows and was closed.
"""

# Name | DisplayName | FeatureType | Installed (1/0) | Depth | Parent
FEATURES = """
AD-Certificate|Active Directory Certificate Services|Role|0|1|
AD-Domain-Services|Active Directory Domain Services|Role|0|1|
DHCP|DHCP Server|Role|0|1|
DNS|DNS Server|Role|0|1|
FileAndStorage-Services|File and Storage Services|Role|1|1|
File-Services|File and iSCSI Services|Role Service|0|2|FileAndStorage-Services
FS-FileServer|File Server|Role Service|0|3|File-Services
Storage-Services|Storage Services|Role Service|1|2|FileAndStorage-Services
Hyper-V|Hyper-V|Role|0|1|
Web-Server|Web Server (IIS)|Role|0|1|
Web-WebServer|Web Server|Role Service|0|2|Web-Server
Web-Common-Http|Common HTTP Features|Role Service|0|3|Web-WebServer
Web-Default-Doc|Default Document|Role Service|0|4|Web-Common-Http
Web-Static-Content|Static Content|Role Service|0|4|Web-Common-Http
Web-Mgmt-Tools|Management Tools|Role Service|0|2|Web-Server
Web-Mgmt-Console|IIS Management Console|Role Service|0|3|Web-Mgmt-Tools
NET-Framework-45-Features|.NET Framework 4.8 Features|Feature|1|1|
NET-Framework-45-Core|.NET Framework 4.8|Feature|1|2|NET-Framework-45-Features
NET-WCF-Services45|WCF Services|Feature|1|2|NET-Framework-45-Features
NET-WCF-TCP-PortSharing45|TCP Port Sharing|Feature|1|3|NET-WCF-Services45
BitLocker|BitLocker Drive Encryption|Feature|0|1|
Failover-Clustering|Failover Clustering|Feature|0|1|
GPMC|Group Policy Management|Feature|0|1|
Windows-Defender|Microsoft Defender Antivirus|Feature|1|1|
PowerShellRoot|Windows PowerShell|Feature|1|1|
PowerShell|Windows PowerShell 5.1|Feature|1|2|PowerShellRoot
PowerShell-ISE|Windows PowerShell ISE|Feature|1|2|PowerShellRoot
RSAT|Remote Server Administration Tools|Feature|0|1|
Telnet-Client|Telnet Client|Feature|0|1|
Windows-Server-Backup|Windows Server Backup|Feature|0|1|
WoW64-Support|WoW64 Support|Feature|1|1|
XPS-Viewer|XPS Viewer|Feature|1|1|
System-DataArchiver|System Data Archiver|Feature|1|1|
"""

# TaskPath | TaskName | State | Author | Description
SCHEDULED_TASKS = """
\\|ContosoAgentHealth|Ready|SIMULATED-GUEST\\Administrator|Checks the Contoso monitoring agent every 15 minutes (simulated).
\\|MicrosoftEdgeUpdateTaskMachineCore|Ready|Microsoft Corporation|Keeps your Microsoft software up to date.
\\Microsoft\\Windows\\.NET Framework\\|.NET Framework NGEN v4.0.30319 64|Ready|Microsoft Corporation|
\\Microsoft\\Windows\\Application Experience\\|Microsoft Compatibility Appraiser|Ready|Microsoft Corporation|Collects program telemetry information if opted-in to the Microsoft Customer Experience Improvement Program.
\\Microsoft\\Windows\\Defrag\\|ScheduledDefrag|Ready|Microsoft Corporation|This task optimizes local storage drives.
\\Microsoft\\Windows\\Server Manager\\|ServerManager|Ready|Microsoft Corporation|Task for launching Initial Configuration Tasks or Server Manager at logon.
\\Microsoft\\Windows\\UpdateOrchestrator\\|Schedule Scan|Ready|Microsoft Corporation|Scans the device for updates.
\\Microsoft\\Windows\\Windows Defender\\|Windows Defender Scheduled Scan|Ready|Microsoft Corporation|Periodic scan task.
\\Microsoft\\Windows\\WindowsUpdate\\|Scheduled Start|Ready|Microsoft Corporation|This task is used to start the Windows Update service when needed to perform scheduled operations such as scans.
\\Microsoft\\Windows\\Time Synchronization\\|SynchronizeTime|Disabled|Microsoft Corporation|Maintains date and time synchronization on all clients and servers in the network.
\\Microsoft\\Windows\\Diagnosis\\|Scheduled|Ready|Microsoft Corporation|The Windows Scheduled Maintenance Task performs periodic maintenance of the computer system.
\\Microsoft\\Windows\\Chkdsk\\|ProactiveScan|Ready|Microsoft Corporation|NTFS Volume Health Scan
"""

# Log files seeded into the guest's C: drive (for the troubleshooting bundle runbook)
LOG_FILES = {
    "C:\\Windows\\Logs\\CBS\\CBS.log": (
        "{ts}, Info                  CBS    Starting TrustedInstaller initialization.\n"
        "{ts}, Info                  CBS    Loaded Servicing Stack v10.0.20348.2760\n"
        "{ts}, Info                  CBS    Session: 31142417_1907398562 initialized by client "
        "WindowsUpdateAgent, external staging directory: (null)\n"
        "{ts}, Error                 CBS    Failed to pin deployment while resolving Update: "
        "Package_for_RollupFix~31bf3856ad364e35~amd64~~20348.2849.1.5 [HRESULT = 0x800f0922 - "
        "CBS_E_INSTALLERS_FAILED]\n"
        "{ts}, Info                  CBS    (simulated log of the hvmagic demo guest)\n"
    ),
    "C:\\Windows\\Logs\\DISM\\dism.log": (
        "{ts}, Info                  DISM   PID=4412 TID=4416 Scratch directory set to "
        "'C:\\Windows\\TEMP\\'. - CDISMManager::put_ScratchDir\n"
        "{ts}, Info                  DISM   DISM Provider Store: PID=4412 TID=4416 Getting the "
        "collection of providers from a local provider store type. (simulated)\n"
    ),
    "C:\\ProgramData\\Contoso\\Agent\\agent.log": (
        "{ts} INFO  agent starting, version 3.2.1.0 (simulated)\n"
        "{ts} WARN  configuration file C:\\ProgramData\\Contoso\\Agent\\agent.json not found, "
        "using defaults\n"
        "{ts} ERROR unhandled exception: System.IO.FileNotFoundException: agent.json\n"
    ),
}
