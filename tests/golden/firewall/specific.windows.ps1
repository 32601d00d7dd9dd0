# mxgate lockdown for Windows Defender Firewall, from mxgate.conf
# (mxgate firewall --format windows).
#
# Run in an elevated PowerShell: powershell -ExecutionPolicy Bypass -File FILE.ps1
# It removes every firewall rule of the group 'mxgate' and makes the rules below; running
# it again changes nothing.  A block rule wins over any allow rule in Windows, so each
# port gets an allow rule for the listed ranges and a block rule for every other address.
# Undo: Get-NetFirewallRule -Group 'mxgate' | Remove-NetFirewallRule
#Requires -RunAsAdministrator

$ErrorActionPreference = 'Stop'
Get-NetFirewallRule -Group 'mxgate' -ErrorAction SilentlyContinue | Remove-NetFirewallRule

# TCP port 25, IPv4, local address 203.0.113.25: connectors "Partner on .25", "Everyone else filtered"
$local = '203.0.113.25'
$allow = @(
	'192.0.2.0/24',
	'198.51.100.0/24'
)
$block = @(
	'0.0.0.0-192.0.1.255',
	'192.0.3.0-198.51.99.255',
	'198.51.101.0-255.255.255.255'
)
New-NetFirewallRule -Name 'mxgate-p25-v4-a1-allow' -Group 'mxgate' -DisplayName 'mxgate: allow TCP 25 (IPv4) from the listed ranges' -Direction Inbound -Protocol TCP -LocalPort 25 -LocalAddress $local -RemoteAddress $allow -Action Allow | Out-Null
New-NetFirewallRule -Name 'mxgate-p25-v4-a1-block' -Group 'mxgate' -DisplayName 'mxgate: block TCP 25 (IPv4) from every other address' -Direction Inbound -Protocol TCP -LocalPort 25 -LocalAddress $local -RemoteAddress $block -Action Block | Out-Null

# TCP port 25, IPv4, local address 203.0.113.26: connectors "Second address", "Everyone else filtered"
$local = '203.0.113.26'
$allow = @(
	'192.0.2.128/25',
	'198.51.100.0/24'
)
$block = @(
	'0.0.0.0-192.0.2.127',
	'192.0.3.0-198.51.99.255',
	'198.51.101.0-255.255.255.255'
)
New-NetFirewallRule -Name 'mxgate-p25-v4-a2-allow' -Group 'mxgate' -DisplayName 'mxgate: allow TCP 25 (IPv4) from the listed ranges' -Direction Inbound -Protocol TCP -LocalPort 25 -LocalAddress $local -RemoteAddress $allow -Action Allow | Out-Null
New-NetFirewallRule -Name 'mxgate-p25-v4-a2-block' -Group 'mxgate' -DisplayName 'mxgate: block TCP 25 (IPv4) from every other address' -Direction Inbound -Protocol TCP -LocalPort 25 -LocalAddress $local -RemoteAddress $block -Action Block | Out-Null

# TCP port 25, IPv4, any local address: connector "Everyone else filtered"
$local = @(
	'0.0.0.0-203.0.113.24',
	'203.0.113.27-255.255.255.255'
)
$allow = @(
	'198.51.100.0/24'
)
$block = @(
	'0.0.0.0-198.51.99.255',
	'198.51.101.0-255.255.255.255'
)
New-NetFirewallRule -Name 'mxgate-p25-v4-allow' -Group 'mxgate' -DisplayName 'mxgate: allow TCP 25 (IPv4) from the listed ranges' -Direction Inbound -Protocol TCP -LocalPort 25 -LocalAddress $local -RemoteAddress $allow -Action Allow | Out-Null
New-NetFirewallRule -Name 'mxgate-p25-v4-block' -Group 'mxgate' -DisplayName 'mxgate: block TCP 25 (IPv4) from every other address' -Direction Inbound -Protocol TCP -LocalPort 25 -LocalAddress $local -RemoteAddress $block -Action Block | Out-Null

# TCP port 25, IPv6, local address 2001:db8::25: connector "Partner on .25"
$local = '2001:db8::25'
$allow = @(
	'2001:db8:aa::/48'
)
$block = @(
	'::-2001:db8:a9:ffff:ffff:ffff:ffff:ffff',
	'2001:db8:ab::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'
)
New-NetFirewallRule -Name 'mxgate-p25-v6-a1-allow' -Group 'mxgate' -DisplayName 'mxgate: allow TCP 25 (IPv6) from the listed ranges' -Direction Inbound -Protocol TCP -LocalPort 25 -LocalAddress $local -RemoteAddress $allow -Action Allow | Out-Null
New-NetFirewallRule -Name 'mxgate-p25-v6-a1-block' -Group 'mxgate' -DisplayName 'mxgate: block TCP 25 (IPv6) from every other address' -Direction Inbound -Protocol TCP -LocalPort 25 -LocalAddress $local -RemoteAddress $block -Action Block | Out-Null
