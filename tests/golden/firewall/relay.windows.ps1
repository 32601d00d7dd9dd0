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

# TCP port 25, IPv4, any local address: connectors "Internet", "Office relay"
$allow = @(
	'10.20.0.0/16',
	'198.51.100.0/24'
)
$block = @(
	'0.0.0.0-10.19.255.255',
	'10.21.0.0-198.51.99.255',
	'198.51.101.0-255.255.255.255'
)
New-NetFirewallRule -Name 'mxgate-p25-v4-allow' -Group 'mxgate' -DisplayName 'mxgate: allow TCP 25 (IPv4) from the listed ranges' -Direction Inbound -Protocol TCP -LocalPort 25 -RemoteAddress $allow -Action Allow | Out-Null
New-NetFirewallRule -Name 'mxgate-p25-v4-block' -Group 'mxgate' -DisplayName 'mxgate: block TCP 25 (IPv4) from every other address' -Direction Inbound -Protocol TCP -LocalPort 25 -RemoteAddress $block -Action Block | Out-Null
