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

# TCP port 25, IPv4, any local address: connector "Inbound"
$allow = @(
	'192.0.2.0/24'
)
$block = @(
	'0.0.0.0-192.0.1.255',
	'192.0.3.0-255.255.255.255'
)
New-NetFirewallRule -Name 'mxgate-p25-v4-allow' -Group 'mxgate' -DisplayName 'mxgate: allow TCP 25 (IPv4) from the listed ranges' -Direction Inbound -Protocol TCP -LocalPort 25 -RemoteAddress $allow -Action Allow | Out-Null
New-NetFirewallRule -Name 'mxgate-p25-v4-block' -Group 'mxgate' -DisplayName 'mxgate: block TCP 25 (IPv4) from every other address' -Direction Inbound -Protocol TCP -LocalPort 25 -RemoteAddress $block -Action Block | Out-Null

# TCP port 587, IPv4, any local address: connector "Submission"
$allow = @(
	'172.16.0.0/12'
)
$block = @(
	'0.0.0.0-172.15.255.255',
	'172.32.0.0-255.255.255.255'
)
New-NetFirewallRule -Name 'mxgate-p587-v4-allow' -Group 'mxgate' -DisplayName 'mxgate: allow TCP 587 (IPv4) from the listed ranges' -Direction Inbound -Protocol TCP -LocalPort 587 -RemoteAddress $allow -Action Allow | Out-Null
New-NetFirewallRule -Name 'mxgate-p587-v4-block' -Group 'mxgate' -DisplayName 'mxgate: block TCP 587 (IPv4) from every other address' -Direction Inbound -Protocol TCP -LocalPort 587 -RemoteAddress $block -Action Block | Out-Null

# TCP port 2525, IPv4, any local address: connectors "Inbound", "Office"
$allow = @(
	'10.0.0.0/8',
	'192.0.2.0/24'
)
$block = @(
	'0.0.0.0-9.255.255.255',
	'11.0.0.0-192.0.1.255',
	'192.0.3.0-255.255.255.255'
)
New-NetFirewallRule -Name 'mxgate-p2525-v4-allow' -Group 'mxgate' -DisplayName 'mxgate: allow TCP 2525 (IPv4) from the listed ranges' -Direction Inbound -Protocol TCP -LocalPort 2525 -RemoteAddress $allow -Action Allow | Out-Null
New-NetFirewallRule -Name 'mxgate-p2525-v4-block' -Group 'mxgate' -DisplayName 'mxgate: block TCP 2525 (IPv4) from every other address' -Direction Inbound -Protocol TCP -LocalPort 2525 -RemoteAddress $block -Action Block | Out-Null
