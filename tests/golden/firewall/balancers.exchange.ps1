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

# connector "Behind HAProxy", line 5
Set-MxgateReceiveConnector 'Behind HAProxy' @{
	Bindings = @('0.0.0.0:25', '[::]:25')
	RemoteIPRanges = @(
		'192.0.2.0/24',
		'2001:db8:c::/48'
	)
	AuthMechanism = 'Tls'
	PermissionGroups = 'AnonymousUsers'
	RequireTLS = $false
	MaxMessageSize = 36MB
	MaxRecipientsPerMessage = 200
}

# connector "Office", line 10
Set-MxgateReceiveConnector 'Office' @{
	Bindings = @('0.0.0.0:2525')
	RemoteIPRanges = @(
		'10.0.0.0/16'
	)
	AuthMechanism = 'ExternalAuthoritative'
	PermissionGroups = 'ExchangeServers'
	RequireTLS = $false
	MaxMessageSize = 36MB
	MaxRecipientsPerMessage = 200
}
# Anonymous relay, as in mxgate: ExternalAuthoritative grants the clients in
# RemoteIPRanges the ExchangeServers rights (relay to any recipient, no
# MaxMessageSize, no tarpit) without authentication.  For relay only, with the
# size limit kept and the senders anonymous, run instead (one or the other):
#   Set-ReceiveConnector -Identity ("$Server\" + 'Office') -AuthMechanism 'None' -PermissionGroups 'AnonymousUsers'
#   Get-ReceiveConnector -Identity ("$Server\" + 'Office') | Add-ADPermission -User 'NT AUTHORITY\ANONYMOUS LOGON' -ExtendedRights 'Ms-Exch-SMTP-Accept-Any-Recipient'
