# mxgate receive connectors for Exchange Server 2013 and later, from mxgate.conf
# (mxgate firewall --format exchange).
#
# Run in the Exchange Management Shell on the Mailbox server: .\FILE.ps1 [-Server NAME]
# Each connector below is made in the Frontend Transport service (New-ReceiveConnector
# -Custom), or updated when the server has one of that name (Set-ReceiveConnector);
# running it again changes nothing.  Exchange picks the connector with the most specific
# remote range, as mxgate does: the built-in "Default Frontend SERVER" connector still
# takes every other client on port 25 until you narrow its RemoteIPRanges or firewall
# the port (mxgate firewall --format windows).

param([string]$Server = $env:COMPUTERNAME)
$ErrorActionPreference = 'Stop'

function Set-MxgateReceiveConnector([string]$Name, [hashtable]$Settings) {
	$id = "$Server\$Name"
	$existing = Get-ReceiveConnector -Identity $id -ErrorAction SilentlyContinue
	if ($existing) {
		if ($existing.TransportRole -ne 'FrontendTransport') {
			Write-Warning "$id runs in $($existing.TransportRole); a port 25 connector belongs in FrontendTransport"
		}
		Set-ReceiveConnector -Identity $id @Settings
	} else {
		New-ReceiveConnector -Name $Name -Server $Server -TransportRole FrontendTransport -Custom @Settings | Out-Null
	}
}

# connector "From Proofpoint", line 4
Set-MxgateReceiveConnector 'From Proofpoint' @{
	Bindings = @('0.0.0.0:25')
	RemoteIPRanges = @(
		'67.231.144.0/24',
		'67.231.145.0/24',
		'67.231.146.0/24',
		'67.231.147.0/24',
		'67.231.148.0/24',
		'67.231.149.0/24',
		'67.231.152.0/24',
		'67.231.153.0/24',
		'67.231.154.0/24',
		'67.231.155.0/24',
		'67.231.156.0/24',
		'148.163.128.0/19'
	)
	AuthMechanism = 'Tls'
	PermissionGroups = 'AnonymousUsers'
	RequireTLS = $false
	MaxMessageSize = 36MB
	MaxRecipientsPerMessage = 200
}
