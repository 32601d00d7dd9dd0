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

# connector "Partner on .25", line 1
Set-MxgateReceiveConnector 'Partner on .25' @{
	Bindings = @('203.0.113.25:25', '[2001:db8::25]:25')
	RemoteIPRanges = @(
		'192.0.2.0/24',
		'2001:db8:aa::/48'
	)
	AuthMechanism = 'None'
	PermissionGroups = 'Partners'
	RequireTLS = $false
	MaxMessageSize = 36MB
	MaxRecipientsPerMessage = 200
}

# connector "Everyone else filtered", line 7
Set-MxgateReceiveConnector 'Everyone else filtered' @{
	Bindings = @('0.0.0.0:25')
	RemoteIPRanges = @(
		'198.51.100.0/24'
	)
	AuthMechanism = 'None'
	PermissionGroups = 'AnonymousUsers'
	RequireTLS = $false
	MaxMessageSize = 36MB
	MaxRecipientsPerMessage = 200
}

# connector "Second address", line 13
Set-MxgateReceiveConnector 'Second address' @{
	Bindings = @('203.0.113.26:25')
	RemoteIPRanges = @(
		'192.0.2.128/25'
	)
	AuthMechanism = 'None'
	PermissionGroups = 'AnonymousUsers'
	RequireTLS = $false
	MaxMessageSize = 36MB
	MaxRecipientsPerMessage = 200
}
