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

# TCP port 25, IPv4, any local address: connector "Behind HAProxy", and the balancers (proxy-protocol-from)
$allow = @(
	'10.9.0.10/31',
	'192.0.2.0/24'
)
$block = @(
	'0.0.0.0-10.9.0.9',
	'10.9.0.12-192.0.1.255',
	'192.0.3.0-255.255.255.255'
)
New-NetFirewallRule -Name 'mxgate-p25-v4-allow' -Group 'mxgate' -DisplayName 'mxgate: allow TCP 25 (IPv4) from the listed ranges' -Direction Inbound -Protocol TCP -LocalPort 25 -RemoteAddress $allow -Action Allow | Out-Null
New-NetFirewallRule -Name 'mxgate-p25-v4-block' -Group 'mxgate' -DisplayName 'mxgate: block TCP 25 (IPv4) from every other address' -Direction Inbound -Protocol TCP -LocalPort 25 -RemoteAddress $block -Action Block | Out-Null

# TCP port 25, IPv6, any local address: connector "Behind HAProxy", and the balancers (proxy-protocol-from)
$allow = @(
	'2001:db8:b::/64',
	'2001:db8:c::/48'
)
$block = @(
	'::-2001:db8:a:ffff:ffff:ffff:ffff:ffff',
	'2001:db8:b:1::-2001:db8:b:ffff:ffff:ffff:ffff:ffff',
	'2001:db8:d::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'
)
New-NetFirewallRule -Name 'mxgate-p25-v6-allow' -Group 'mxgate' -DisplayName 'mxgate: allow TCP 25 (IPv6) from the listed ranges' -Direction Inbound -Protocol TCP -LocalPort 25 -RemoteAddress $allow -Action Allow | Out-Null
New-NetFirewallRule -Name 'mxgate-p25-v6-block' -Group 'mxgate' -DisplayName 'mxgate: block TCP 25 (IPv6) from every other address' -Direction Inbound -Protocol TCP -LocalPort 25 -RemoteAddress $block -Action Block | Out-Null

# TCP port 2525, IPv4, any local address: connector "Office", and the balancers (proxy-protocol-from)
$allow = @(
	'10.0.0.0/16',
	'10.9.0.10/31'
)
$block = @(
	'0.0.0.0-9.255.255.255',
	'10.1.0.0-10.9.0.9',
	'10.9.0.12-255.255.255.255'
)
New-NetFirewallRule -Name 'mxgate-p2525-v4-allow' -Group 'mxgate' -DisplayName 'mxgate: allow TCP 2525 (IPv4) from the listed ranges' -Direction Inbound -Protocol TCP -LocalPort 2525 -RemoteAddress $allow -Action Allow | Out-Null
New-NetFirewallRule -Name 'mxgate-p2525-v4-block' -Group 'mxgate' -DisplayName 'mxgate: block TCP 2525 (IPv4) from every other address' -Direction Inbound -Protocol TCP -LocalPort 2525 -RemoteAddress $block -Action Block | Out-Null
