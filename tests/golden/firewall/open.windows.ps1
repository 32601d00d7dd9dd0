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

# TCP port 25, IPv4, any local address: connector "Anyone"
# every IPv4 client is allowed: this port is not restricted here

# TCP port 25, IPv6, any local address: connector "Anyone"
# every IPv6 client is allowed: this port is not restricted here

# TCP port 465, IPv4, any local address: connector "IPv6 only ranges"
# no IPv4 range is listed: every IPv4 client is dropped
$block = @(
	'0.0.0.0-255.255.255.255'
)
New-NetFirewallRule -Name 'mxgate-p465-v4-block' -Group 'mxgate' -DisplayName 'mxgate: block TCP 465 (IPv4) from every other address' -Direction Inbound -Protocol TCP -LocalPort 465 -RemoteAddress $block -Action Block | Out-Null

# TCP port 465, IPv6, any local address: connector "IPv6 only ranges"
$allow = @(
	'2001:db8::/32'
)
$block = @(
	'::-2001:db7:ffff:ffff:ffff:ffff:ffff:ffff',
	'2001:db9::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'
)
New-NetFirewallRule -Name 'mxgate-p465-v6-allow' -Group 'mxgate' -DisplayName 'mxgate: allow TCP 465 (IPv6) from the listed ranges' -Direction Inbound -Protocol TCP -LocalPort 465 -RemoteAddress $allow -Action Allow | Out-Null
New-NetFirewallRule -Name 'mxgate-p465-v6-block' -Group 'mxgate' -DisplayName 'mxgate: block TCP 465 (IPv6) from every other address' -Direction Inbound -Protocol TCP -LocalPort 465 -RemoteAddress $block -Action Block | Out-Null

# TCP port 2525, IPv4, local address 203.0.113.25: connectors "Open on one address", "Filtered"
# every IPv4 client is allowed: this port is not restricted here

# TCP port 2525, IPv4, any local address: connector "Filtered"
$local = @(
	'0.0.0.0-203.0.113.24',
	'203.0.113.26-255.255.255.255'
)
$allow = @(
	'192.0.2.0/24'
)
$block = @(
	'0.0.0.0-192.0.1.255',
	'192.0.3.0-255.255.255.255'
)
New-NetFirewallRule -Name 'mxgate-p2525-v4-allow' -Group 'mxgate' -DisplayName 'mxgate: allow TCP 2525 (IPv4) from the listed ranges' -Direction Inbound -Protocol TCP -LocalPort 2525 -LocalAddress $local -RemoteAddress $allow -Action Allow | Out-Null
New-NetFirewallRule -Name 'mxgate-p2525-v4-block' -Group 'mxgate' -DisplayName 'mxgate: block TCP 2525 (IPv4) from every other address' -Direction Inbound -Protocol TCP -LocalPort 2525 -LocalAddress $local -RemoteAddress $block -Action Block | Out-Null
