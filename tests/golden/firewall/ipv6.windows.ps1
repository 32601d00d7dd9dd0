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

# TCP port 25, IPv4, any local address: connector "Microsoft"
$allow = @(
	'40.92.0.0/15'
)
$block = @(
	'0.0.0.0-40.91.255.255',
	'40.94.0.0-255.255.255.255'
)
New-NetFirewallRule -Name 'mxgate-p25-v4-allow' -Group 'mxgate' -DisplayName 'mxgate: allow TCP 25 (IPv4) from the listed ranges' -Direction Inbound -Protocol TCP -LocalPort 25 -RemoteAddress $allow -Action Allow | Out-Null
New-NetFirewallRule -Name 'mxgate-p25-v4-block' -Group 'mxgate' -DisplayName 'mxgate: block TCP 25 (IPv4) from every other address' -Direction Inbound -Protocol TCP -LocalPort 25 -RemoteAddress $block -Action Block | Out-Null

# TCP port 25, IPv6, any local address: connector "Microsoft"
$allow = @(
	'2001:db8::5-2001:db8::9',
	'2001:db8:0:1::/64',
	'2a01:111:f400::/48',
	'2a01:111:f403::/48'
)
$block = @(
	'::-2001:db8::4',
	'2001:db8::a-2001:db8::ffff:ffff:ffff:ffff',
	'2001:db8:0:2::-2a01:111:f3ff:ffff:ffff:ffff:ffff:ffff',
	'2a01:111:f401::-2a01:111:f402:ffff:ffff:ffff:ffff:ffff',
	'2a01:111:f404::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'
)
New-NetFirewallRule -Name 'mxgate-p25-v6-allow' -Group 'mxgate' -DisplayName 'mxgate: allow TCP 25 (IPv6) from the listed ranges' -Direction Inbound -Protocol TCP -LocalPort 25 -RemoteAddress $allow -Action Allow | Out-Null
New-NetFirewallRule -Name 'mxgate-p25-v6-block' -Group 'mxgate' -DisplayName 'mxgate: block TCP 25 (IPv6) from every other address' -Direction Inbound -Protocol TCP -LocalPort 25 -RemoteAddress $block -Action Block | Out-Null
