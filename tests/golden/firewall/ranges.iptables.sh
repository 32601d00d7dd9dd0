#!/bin/sh
# mxgate lockdown for iptables, from mxgate.conf (mxgate firewall --format iptables).
#
# Run as root: sh FILE
# iptables-restore --noflush makes the chain MXGATE-INPUT, or empties and refills it,
# and leaves every other chain alone; the jump to it is put first in INPUT only when
# missing.  The same for IPv6 with ip6tables.  Running it again changes nothing.
# Allowed clients RETURN to INPUT, where your own rules still apply; the rest is dropped.
# Undo: iptables -D INPUT -j MXGATE-INPUT && iptables -F MXGATE-INPUT && iptables -X MXGATE-INPUT
# (and the same with ip6tables).
set -e

# IPv4
iptables-restore -w --noflush <<'MXGATE_EOF'
*filter
:MXGATE-INPUT - [0:0]
# TCP port 25, IPv4, any local address: connectors "Wide", "Narrow"
-A MXGATE-INPUT -p tcp --dport 25 -s 10.0.0.0/7 -j RETURN
-A MXGATE-INPUT -p tcp --dport 25 -m iprange --src-range 172.16.0.0-172.16.9.255 -j RETURN
-A MXGATE-INPUT -p tcp --dport 25 -m iprange --src-range 192.0.2.10-192.0.2.20 -j RETURN
-A MXGATE-INPUT -p tcp --dport 25 -m iprange --src-range 198.51.100.1-198.51.100.254 -j RETURN
-A MXGATE-INPUT -p tcp --dport 25 -j DROP
COMMIT
MXGATE_EOF
iptables -w -C INPUT -j MXGATE-INPUT 2>/dev/null || iptables -w -I INPUT 1 -j MXGATE-INPUT

# IPv6
ip6tables-restore -w --noflush <<'MXGATE_EOF'
*filter
:MXGATE-INPUT - [0:0]
# no IPv6 binding: the chain stays empty
COMMIT
MXGATE_EOF
ip6tables -w -C INPUT -j MXGATE-INPUT 2>/dev/null || ip6tables -w -I INPUT 1 -j MXGATE-INPUT
